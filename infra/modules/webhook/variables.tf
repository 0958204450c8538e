variable "name" {
  description = "Name prefix: functions <name>-webhook and <name>-sweep."
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

variable "webhook_zip_path" {
  description = "Deployment zip of the webhook function."
  type        = string
}

variable "sweep_zip_path" {
  description = "Deployment zip of the sweep function."
  type        = string
}

variable "ignore_code_changes" {
  description = "Upload the zips only at creation (code updates via cargo lambda deploy)."
  type        = bool
  default     = false
}

variable "architecture" {
  description = "Lambda architecture: x86_64 or arm64."
  type        = string
}

variable "memory_size" {
  description = "Memory (MB) of both functions."
  type        = number
}

variable "webhook_timeout" {
  description = "Timeout of the webhook function (seconds)."
  type        = number
}

variable "sweep_timeout" {
  description = "Timeout of the sweep function (seconds)."
  type        = number
}

variable "webhook_reserved_concurrency" {
  description = "Reserved concurrency of the webhook function (null: unreserved)."
  type        = number
}

variable "sweep_reserved_concurrency" {
  description = "Reserved concurrency of the sweep function (null: unreserved)."
  type        = number
}

variable "webhook_environment" {
  description = "Environment of the webhook function."
  type        = map(string)
}

variable "sweep_environment" {
  description = "Environment of the sweep function."
  type        = map(string)
}

variable "log_retention_in_days" {
  description = "Retention of the log groups."
  type        = number
}

variable "log_kms_key_arn" {
  description = "KMS key of the log groups."
  type        = string
}

variable "log_level" {
  description = "Application log level of the functions."
  type        = string
}

variable "tracing_mode" {
  description = "X-Ray tracing mode."
  type        = string
}

variable "endpoint_type" {
  description = "How Anthropic reaches the webhook: function_url or http_api."
  type        = string
}

variable "http_api_throttling_burst_limit" {
  description = "HTTP API: burst limit of the webhook route."
  type        = number
}

variable "http_api_throttling_rate_limit" {
  description = "HTTP API: steady-state requests per second of the webhook route."
  type        = number
}

variable "create_sweep_schedule" {
  description = "Create the EventBridge Scheduler schedule invoking the sweep."
  type        = bool
}

variable "sweep_schedule_expression" {
  description = "Schedule expression of the sweep."
  type        = string
}

variable "queue_arn" {
  description = "ARN of the work queue the functions send to."
  type        = string
}

variable "data_kms_key_arn" {
  description = "KMS key of the queue and the secrets."
  type        = string
}

variable "work_secret_kms_key_arn" {
  description = "KMS key enveloping the work secret."
  type        = string
}

variable "environment_key_secret_arn" {
  description = "Secret holding the environment key."
  type        = string
}

variable "webhook_signing_key_secret_arn" {
  description = "Secret holding the webhook signing secret (webhook function only)."
  type        = string
}

variable "anthropic_environment_id" {
  description = "The environment id (pins kms:EncryptionContext:environment_id)."
  type        = string
}

variable "capacity_check" {
  description = "Whether the functions count running runner tasks (MAX_CONCURRENT_SESSIONS is set)."
  type        = bool
}

variable "ecs_cluster_arn" {
  description = "Cluster the capacity check lists tasks in."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
