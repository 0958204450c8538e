output "ecr_repository_url" {
  description = "URL of the runner image repository (null when not created)."
  value       = local.repository_url
}

output "ecr_repository_name" {
  description = "Name of the runner image repository (null when not created)."
  value       = var.create_ecr_repository ? aws_ecr_repository.this[0].name : null
}

output "image" {
  description = "The image the task definition runs."
  value       = local.image
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "container_insights" {
  description = "Container Insights setting of the cluster."
  value       = one([for s in aws_ecs_cluster.this.setting : s.value if s.name == "containerInsights"])
}

output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "task_definition_family" {
  description = "Family of the runner task definition."
  value       = aws_ecs_task_definition.this.family
}

output "task_definition_arn" {
  description = "ARN (with revision) of the runner task definition."
  value       = aws_ecs_task_definition.this.arn
}

output "container_name" {
  description = "Name of the runner container (the dispatcher's overrides target it)."
  value       = local.container_name
}

output "container_definitions" {
  description = "The task definition's container definitions, decoded."
  value       = jsondecode(aws_ecs_task_definition.this.container_definitions)
}

output "task_definition" {
  description = "Task-level settings of the runner task definition."
  value = {
    cpu                      = aws_ecs_task_definition.this.cpu
    memory                   = aws_ecs_task_definition.this.memory
    network_mode             = aws_ecs_task_definition.this.network_mode
    requires_compatibilities = aws_ecs_task_definition.this.requires_compatibilities
    cpu_architecture         = one(aws_ecs_task_definition.this.runtime_platform[*].cpu_architecture)
    ephemeral_storage_gib    = one(aws_ecs_task_definition.this.ephemeral_storage[*].size_in_gib)
    volumes                  = [for v in aws_ecs_task_definition.this.volume : v.name]
    task_role_arn            = aws_ecs_task_definition.this.task_role_arn
    execution_role_arn       = aws_ecs_task_definition.this.execution_role_arn
  }
}

output "task_role_arn" {
  description = "ARN of the runner task role."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "ARN of the runner task execution role."
  value       = aws_iam_role.execution.arn
}

output "log_group_name" {
  description = "Log group of the runner containers."
  value       = aws_cloudwatch_log_group.this.name
}

output "policy_documents" {
  description = "Inline policies (JSON) of the two task roles."
  value = {
    runner_task      = aws_iam_role_policy.task.policy
    runner_execution = aws_iam_role_policy.execution.policy
  }
}
