variable "name" {
  description = "Name prefix: function <name>-dispatcher."
  type        = string
}

variable "partition" {
  description = "AWS partition."
  type        = string
}

variable "region" {
  description = "AWS Region."
  type        = string
}

variable "account_id" {
  description = "AWS account id."
  type        = string
}

variable "zip_path" {
  description = "Deployment zip of the dispatcher."
  type        = string
}

variable "ignore_code_changes" {
  description = "Upload the zip only at creation (code updates via cargo lambda deploy)."
  type        = bool
  default     = false
}

variable "architecture" {
  description = "Lambda architecture: x86_64 or arm64."
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
  description = "Reserved concurrency (null: unreserved)."
  type        = number
}

variable "environment" {
  description = "Environment of the function."
  type        = map(string)
}

variable "log_retention_in_days" {
  description = "Retention of the log group."
  type        = number
}

variable "log_kms_key_arn" {
  description = "KMS key of the log group."
  type        = string
}

variable "log_level" {
  description = "Application log level."
  type        = string
}

variable "tracing_mode" {
  description = "X-Ray tracing mode."
  type        = string
}

variable "queue_arn" {
  description = "The work queue (event source)."
  type        = string
}

variable "data_kms_key_arn" {
  description = "KMS key of the queue."
  type        = string
}

variable "ecs_cluster_arn" {
  description = "Cluster the runner tasks start in."
  type        = string
}

variable "ecs_cluster_name" {
  description = "Name of that cluster."
  type        = string
}

variable "task_definition_family" {
  description = "Task-definition family of the runner (the only one RunTask may start)."
  type        = string
}

variable "pass_role_arns" {
  description = "Exactly the runner's task role and task execution role."
  type        = list(string)

  validation {
    condition     = length(var.pass_role_arns) == 2
    error_message = "pass_role_arns must be the task role and the task execution role, nothing else."
  }
}

variable "batch_size" {
  description = "Messages per invocation (1-10 without a batching window)."
  type        = number
}

variable "maximum_batching_window_in_seconds" {
  description = "How long the event source mapping gathers a batch (0: invoke at once)."
  type        = number
}

variable "maximum_concurrency" {
  description = "Maximum concurrent dispatcher invocations the event source mapping starts (2-1000)."
  type        = number
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
