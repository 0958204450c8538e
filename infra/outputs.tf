################################################################################
# What to do after `terraform apply`
################################################################################

output "webhook_url" {
  description = "Register this URL as the webhook endpoint of the environment in the Claude Console (event session.status_run_started)."
  value       = module.webhook.webhook_url
}

output "environment_key_secret_arn" {
  description = "Secrets Manager secret to fill with the environment key (sk-ant-...): aws secretsmanager put-secret-value --secret-id <this> --secret-string file:///dev/stdin."
  value       = module.secrets.environment_key_secret_arn
}

output "webhook_signing_key_secret_arn" {
  description = "Secrets Manager secret to fill with the webhook signing secret (whsec_...) shown when the webhook is registered."
  value       = module.secrets.webhook_signing_key_secret_arn
}

output "ecr_repository_url" {
  description = "ECR repository of the runner image (null with create_ecr_repository = false)."
  value       = module.runner.ecr_repository_url
}

output "runner_image" {
  description = "The image the runner task definition runs."
  value       = module.runner.image
}

output "docker_push_command" {
  description = "Log in to ECR, tag the locally built runner image (cma-runner) and push it under runner_image_tag (null without a created repository)."
  value = module.runner.ecr_repository_url == null ? null : join(" && ", [
    "aws ecr get-login-password --region ${local.region} | docker login --username AWS --password-stdin ${split("/", module.runner.ecr_repository_url)[0]}",
    "docker tag cma-runner ${module.runner.image}",
    "docker push ${module.runner.image}",
  ])
}

################################################################################
# Names (operations, cargo lambda deploy)
################################################################################

output "webhook_function_name" {
  description = "Name of the webhook function (cargo lambda deploy --binary-name webhook <this>)."
  value       = module.webhook.webhook_function_name
}

output "sweep_function_name" {
  description = "Name of the sweep function (cargo lambda deploy --binary-name sweep <this>)."
  value       = module.webhook.sweep_function_name
}

output "dispatcher_function_name" {
  description = "Name of the dispatcher function (cargo lambda deploy --binary-name dispatcher <this>)."
  value       = module.dispatcher.function_name
}

output "webhook_role_arn" {
  description = "Execution role of the webhook function (cargo lambda deploy --iam-role)."
  value       = module.webhook.webhook_role_arn
}

output "sweep_role_arn" {
  description = "Execution role of the sweep function (cargo lambda deploy --iam-role)."
  value       = module.webhook.sweep_role_arn
}

output "dispatcher_role_arn" {
  description = "Execution role of the dispatcher function (cargo lambda deploy --iam-role)."
  value       = module.dispatcher.role_arn
}

output "cargo_lambda_deploy_commands" {
  description = "Code-only updates of the three functions Terraform created (run from the repository root after cargo lambda build)."
  value = {
    for fn, v in {
      webhook    = { name = module.webhook.webhook_function_name, role = module.webhook.webhook_role_arn }
      sweep      = { name = module.webhook.sweep_function_name, role = module.webhook.sweep_role_arn }
      dispatcher = { name = module.dispatcher.function_name, role = module.dispatcher.role_arn }
    } : fn => "cargo lambda deploy --region ${local.region} --iam-role ${v.role} --binary-name ${fn} ${v.name}"
  }
}

output "ecs_cluster_name" {
  description = "Name of the ECS cluster the runner tasks run in."
  value       = module.runner.cluster_name
}

output "ecs_cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = module.runner.cluster_arn
}

output "runner_task_definition_family" {
  description = "Task-definition family of the runner (the dispatcher always starts its latest revision)."
  value       = module.runner.task_definition_family
}

output "runner_task_definition_arn" {
  description = "ARN of the current runner task-definition revision."
  value       = module.runner.task_definition_arn
}

output "runner_task_role_arn" {
  description = "Task role of the runner (kms:Decrypt of its work secret only)."
  value       = module.runner.task_role_arn
}

output "runner_execution_role_arn" {
  description = "Task execution role of the runner (image pull, logs)."
  value       = module.runner.execution_role_arn
}

output "queue_name" {
  description = "Name of the work queue (webhook → dispatcher)."
  value       = module.queue.queue_name
}

output "queue_url" {
  description = "URL of the work queue."
  value       = module.queue.queue_url
}

output "dlq_name" {
  description = "Name of the dead-letter queue (messages the dispatcher failed max-receive times)."
  value       = module.queue.dlq_name
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = module.queue.dlq_url
}

output "work_secret_kms_key_arn" {
  description = "KMS key enveloping the per-session work secret."
  value       = module.secrets.work_secret_kms_key_arn
}

output "data_kms_key_arn" {
  description = "KMS key encrypting the queues, secrets, log groups and repository."
  value       = module.secrets.data_kms_key_arn
}

output "runner_security_group_ids" {
  description = "Security groups attached to every runner task."
  value       = module.network.task_security_group_ids
}

output "log_group_names" {
  description = "CloudWatch log groups, by component."
  value = merge(module.webhook.log_group_names, {
    dispatcher = module.dispatcher.log_group_name
    runner     = module.runner.log_group_name
  })
}

output "alarm_names" {
  description = "CloudWatch alarms on the queues."
  value       = module.queue.alarm_names
}

################################################################################
# Review (what was granted and configured)
################################################################################

output "iam_policy_documents" {
  description = "Every inline IAM policy of the stack (JSON), by role: webhook, sweep, scheduler, dispatcher, runner_task, runner_execution."
  value = merge(
    module.webhook.policy_documents,
    module.dispatcher.policy_documents,
    module.runner.policy_documents,
  )
}

output "kms_key_policies" {
  description = "The key policies of the data and work-secret keys (JSON)."
  value       = module.secrets.key_policies
}

output "lambda_environments" {
  description = "Environment variables of the three functions."
  value = merge(module.webhook.environments, {
    dispatcher = module.dispatcher.environment
  })
}

output "runner_container_environment" {
  description = "Static environment of the runner container (the dispatcher adds the work item's ids and ciphertext per task)."
  value       = { for e in module.runner.container_definitions[0].environment : e.name => e.value }
}
