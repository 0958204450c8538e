variable "function_name" {
  description = "Name of the function (also of its role and log group)."
  type        = string
}

variable "description" {
  description = "Description of the function."
  type        = string
}

variable "zip_path" {
  description = "Path of the deployment zip (cargo lambda build --output-format zip)."
  type        = string
}

variable "ignore_code_changes" {
  description = "Upload the zip only when the function is created; later code updates come from elsewhere (cargo lambda deploy)."
  type        = bool
  default     = false
}

variable "architecture" {
  description = "Instruction set of the zip: x86_64 or arm64."
  type        = string
}

variable "memory_size" {
  description = "Memory (MB)."
  type        = number
}

variable "timeout" {
  description = "Timeout (seconds)."
  type        = number
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions (null: unreserved, shares the account pool)."
  type        = number
  default     = null
}

variable "environment" {
  description = "Environment variables (names must be ones the function reads)."
  type        = map(string)
}

variable "log_retention_in_days" {
  description = "Retention of the function's log group."
  type        = number
}

variable "log_kms_key_arn" {
  description = "KMS key encrypting the function's log group."
  type        = string
}

variable "log_level" {
  description = "Application log level (AWS_LAMBDA_LOG_LEVEL, which the functions read): TRACE, DEBUG, INFO, WARN, ERROR or FATAL."
  type        = string
}

variable "tracing_mode" {
  description = "X-Ray tracing mode: PassThrough or Active."
  type        = string
}

variable "policy_statements" {
  description = "IAM statements of the function's role (the log-group statement is added here)."
  type        = any
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
