output "function_name" {
  description = "Name of the dispatcher function."
  value       = module.function.function_name
}

output "function_arn" {
  description = "ARN of the dispatcher function."
  value       = module.function.function_arn
}

output "role_arn" {
  description = "Execution role of the dispatcher function."
  value       = module.function.role_arn
}

output "log_group_name" {
  description = "Log group of the dispatcher."
  value       = module.function.log_group_name
}

output "event_source_mapping" {
  description = "The SQS event source mapping's settings."
  value = {
    uuid                    = aws_lambda_event_source_mapping.queue.uuid
    batch_size              = aws_lambda_event_source_mapping.queue.batch_size
    function_response_types = aws_lambda_event_source_mapping.queue.function_response_types
    maximum_concurrency     = one(aws_lambda_event_source_mapping.queue.scaling_config[*].maximum_concurrency)
  }
}

output "policy_documents" {
  description = "Inline policy (JSON) of the dispatcher's role."
  value       = { dispatcher = module.function.policy_json }
}

output "environment" {
  description = "Environment variables of the dispatcher."
  value       = module.function.environment
}
