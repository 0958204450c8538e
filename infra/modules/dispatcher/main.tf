# The dispatcher: SQS event source mapping (partial batch responses) → one ecs:RunTask
# per message. It holds no KMS permission on the work-secret key: it passes the
# ciphertext through to the task.

locals {
  task_definition_arn = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:task-definition/${var.task_definition_family}"
  task_arn_pattern    = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:task/${var.ecs_cluster_name}/*"

  statements = [
    {
      Sid      = "ConsumeWorkQueue"
      Effect   = "Allow"
      Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
      Resource = [var.queue_arn]
    },
    {
      Sid       = "DecryptQueueDataKeys"
      Effect    = "Allow"
      Action    = ["kms:Decrypt"]
      Resource  = [var.data_kms_key_arn]
      Condition = { StringEquals = { "kms:ViaService" = "sqs.${var.region}.amazonaws.com" } }
    },
    {
      # Any revision of the runner family, in the runner cluster only.
      Sid       = "RunRunnerTask"
      Effect    = "Allow"
      Action    = ["ecs:RunTask"]
      Resource  = [local.task_definition_arn, "${local.task_definition_arn}:*"]
      Condition = { ArnEquals = { "ecs:cluster" = var.ecs_cluster_arn } }
    },
    {
      # Idempotency check (startedBy) before RunTask. ListTasks has no task-level
      # resource; it is scoped to the cluster by condition.
      Sid       = "ListRunnerTasks"
      Effect    = "Allow"
      Action    = ["ecs:ListTasks"]
      Resource  = ["*"]
      Condition = { ArnEquals = { "ecs:cluster" = var.ecs_cluster_arn } }
    },
    {
      Sid       = "DescribeRunnerTasks"
      Effect    = "Allow"
      Action    = ["ecs:DescribeTasks"]
      Resource  = [local.task_arn_pattern]
      Condition = { ArnEquals = { "ecs:cluster" = var.ecs_cluster_arn } }
    },
    {
      # Tags given to RunTask (cma:work-id, cma:session-id, ...), only while creating.
      Sid       = "TagRunnerTasksOnLaunch"
      Effect    = "Allow"
      Action    = ["ecs:TagResource"]
      Resource  = [local.task_arn_pattern]
      Condition = { StringEquals = { "ecs:CreateAction" = "RunTask" } }
    },
    {
      Sid       = "PassRunnerRoles"
      Effect    = "Allow"
      Action    = ["iam:PassRole"]
      Resource  = var.pass_role_arns
      Condition = { StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" } }
    },
  ]
}

module "function" {
  source = "../lambda-function"

  function_name         = "${var.name}-dispatcher"
  description           = "Claude Managed Agents dispatcher: one Fargate runner task per claimed session"
  zip_path              = var.zip_path
  ignore_code_changes   = var.ignore_code_changes
  architecture          = var.architecture
  memory_size           = var.memory_size
  timeout               = var.timeout
  reserved_concurrency  = var.reserved_concurrency
  environment           = var.environment
  log_retention_in_days = var.log_retention_in_days
  log_kms_key_arn       = var.log_kms_key_arn
  log_level             = var.log_level
  tracing_mode          = var.tracing_mode
  policy_statements     = local.statements
  tags                  = var.tags
}

resource "aws_lambda_event_source_mapping" "queue" {
  event_source_arn                   = var.queue_arn
  function_name                      = module.function.function_arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  enabled                            = true

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }

  tags = var.tags
}
