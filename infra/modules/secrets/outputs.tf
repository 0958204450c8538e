output "data_kms_key_arn" {
  description = "ARN of the KMS key encrypting the queues, secrets, log groups and the ECR repository."
  value       = aws_kms_key.data.arn
}

output "work_secret_kms_key_arn" {
  description = "ARN of the KMS key enveloping the per-session work secret."
  value       = aws_kms_key.work_secret.arn
}

output "work_secret_kms_key_alias" {
  description = "Alias of the work-secret KMS key."
  value       = aws_kms_alias.work_secret.name
}

output "environment_key_secret_arn" {
  description = "ARN of the Secrets Manager secret that must hold the environment key."
  value       = aws_secretsmanager_secret.environment_key.arn
}

output "webhook_signing_key_secret_arn" {
  description = "ARN of the Secrets Manager secret that must hold the webhook signing secret."
  value       = aws_secretsmanager_secret.webhook_signing_key.arn
}

output "key_policies" {
  description = "The two key policies as JSON (for review and tests)."
  value = {
    data        = jsonencode(local.data_key_policy)
    work_secret = jsonencode(local.work_secret_key_policy)
  }
}
