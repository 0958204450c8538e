output "webhook_url" {
  description = "Register this URL as the environment's webhook in the Claude Console."
  value       = module.cma.webhook_url
}

output "environment_key_secret_arn" {
  description = "Put the environment key here (aws secretsmanager put-secret-value)."
  value       = module.cma.environment_key_secret_arn
}

output "webhook_signing_key_secret_arn" {
  description = "Put the webhook signing secret here."
  value       = module.cma.webhook_signing_key_secret_arn
}

output "ecr_repository_url" {
  description = "Repository of the runner image."
  value       = module.cma.ecr_repository_url
}

output "docker_push_command" {
  description = "Log in, tag and push the locally built runner image."
  value       = module.cma.docker_push_command
}

output "cargo_lambda_deploy_commands" {
  description = "Code-only updates of the three functions."
  value       = module.cma.cargo_lambda_deploy_commands
}

output "ecs_cluster_name" {
  description = "Cluster of the runner tasks."
  value       = module.cma.ecs_cluster_name
}

output "queue_name" {
  description = "The work queue."
  value       = module.cma.queue_name
}

output "dlq_name" {
  description = "The dead-letter queue."
  value       = module.cma.dlq_name
}

output "log_group_names" {
  description = "Log groups by component."
  value       = module.cma.log_group_names
}

output "vpc_id" {
  description = "The example VPC."
  value       = aws_vpc.this.id
}

output "webhook_function_name" {
  description = "Name of the webhook function."
  value       = module.cma.webhook_function_name
}

output "sweep_function_name" {
  description = "Name of the sweep function."
  value       = module.cma.sweep_function_name
}

output "dispatcher_function_name" {
  description = "Name of the dispatcher function."
  value       = module.cma.dispatcher_function_name
}

output "webhook_role_arn" {
  description = "Execution role of the webhook function."
  value       = module.cma.webhook_role_arn
}

output "sweep_role_arn" {
  description = "Execution role of the sweep function."
  value       = module.cma.sweep_role_arn
}

output "dispatcher_role_arn" {
  description = "Execution role of the dispatcher function."
  value       = module.cma.dispatcher_role_arn
}
