output "webhook_url" {
  description = "URL to register as the webhook endpoint in the Claude Console."
  value = (
    local.function_url ? aws_lambda_function_url.webhook[0].function_url :
    "${trimsuffix(aws_apigatewayv2_stage.webhook[0].invoke_url, "/")}/"
  )
}

output "webhook_function_name" {
  description = "Name of the webhook function."
  value       = module.webhook.function_name
}

output "webhook_function_arn" {
  description = "ARN of the webhook function."
  value       = module.webhook.function_arn
}

output "webhook_role_arn" {
  description = "Execution role of the webhook function."
  value       = module.webhook.role_arn
}

output "sweep_function_name" {
  description = "Name of the sweep function."
  value       = module.sweep.function_name
}

output "sweep_function_arn" {
  description = "ARN of the sweep function."
  value       = module.sweep.function_arn
}

output "sweep_role_arn" {
  description = "Execution role of the sweep function."
  value       = module.sweep.role_arn
}

output "log_group_names" {
  description = "Log groups of the two functions."
  value       = { webhook = module.webhook.log_group_name, sweep = module.sweep.log_group_name }
}

output "schedule_name" {
  description = "Name of the sweep schedule (null when not created)."
  value       = var.create_sweep_schedule ? aws_scheduler_schedule.sweep[0].name : null
}

output "schedule_expression" {
  description = "Schedule expression of the sweep (null when not created)."
  value       = var.create_sweep_schedule ? aws_scheduler_schedule.sweep[0].schedule_expression : null
}

output "policy_documents" {
  description = "Inline policies (JSON) of the roles of this module, by role."
  value = merge(
    {
      webhook = module.webhook.policy_json
      sweep   = module.sweep.policy_json
    },
    var.create_sweep_schedule ? { scheduler = aws_iam_role_policy.scheduler[0].policy } : {},
  )
}

output "environments" {
  description = "Environment variables of the two functions."
  value       = { webhook = module.webhook.environment, sweep = module.sweep.environment }
}
