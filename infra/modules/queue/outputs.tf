output "queue_arn" {
  description = "ARN of the work queue."
  value       = aws_sqs_queue.this.arn
}

output "queue_url" {
  description = "URL of the work queue."
  value       = aws_sqs_queue.this.id
}

output "queue_name" {
  description = "Name of the work queue."
  value       = aws_sqs_queue.this.name
}

output "visibility_timeout_seconds" {
  description = "Visibility timeout of the work queue."
  value       = aws_sqs_queue.this.visibility_timeout_seconds
}

output "redrive_policy" {
  description = "The work queue's redrive policy, decoded."
  value       = jsondecode(aws_sqs_queue.this.redrive_policy)
}

output "dlq_redrive_allow_policy" {
  description = "The DLQ's redrive allow policy, decoded (null when not created)."
  value       = var.create_dlq_redrive_allow_policy ? jsondecode(aws_sqs_queue_redrive_allow_policy.dlq[0].redrive_allow_policy) : null
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "dlq_name" {
  description = "Name of the dead-letter queue."
  value       = aws_sqs_queue.dlq.name
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms (empty when create_alarms is false)."
  value       = concat(aws_cloudwatch_metric_alarm.dlq_depth[*].alarm_name, aws_cloudwatch_metric_alarm.oldest_message_age[*].alarm_name)
}
