variable "name" {
  description = "Name of the work queue; the dead-letter queue is <name>-dlq."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for SSE of both queues."
  type        = string
}

variable "kms_data_key_reuse_period_seconds" {
  description = "How long SQS reuses a data key before calling KMS again (60-86400)."
  type        = number
  default     = 300
}

variable "consumer_timeout_seconds" {
  description = "Timeout of the consuming Lambda (the dispatcher); the visibility timeout must be at least six times this."
  type        = number
}

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the work queue (>= 6 x consumer_timeout_seconds, AWS's guidance for Lambda event sources)."
  type        = number
}

variable "max_receive_count" {
  description = "Receives before a message moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "message_retention_seconds" {
  description = "Retention of the work queue. Claims older than the dispatcher's STALE_CLAIM_AFTER_SECONDS are dropped anyway."
  type        = number
  default     = 86400
}

variable "dlq_message_retention_seconds" {
  description = "Retention of the dead-letter queue."
  type        = number
  default     = 1209600
}

variable "create_dlq_redrive_allow_policy" {
  description = "Restrict which queues may use the DLQ (redrive allow policy: this work queue only)."
  type        = bool
  default     = true
}

variable "create_alarms" {
  description = "Create the CloudWatch alarms on DLQ depth and oldest message age."
  type        = bool
  default     = true
}

variable "oldest_message_age_alarm_seconds" {
  description = "Alarm when the oldest message of the work queue is older than this."
  type        = number
  default     = 120
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or recovers (e.g. an SNS topic)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
