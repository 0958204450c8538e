# The webhook (HTTP: Function URL or HTTP API) and the sweep (EventBridge Scheduler),
# two functions from one library. The sweep never holds the signing secret and has no
# HTTP endpoint.

locals {
  encryption_context_keys = ["environment_id", "work_id", "session_id"]

  # Statements shared by both functions.
  drain_statements = concat(
    [
      {
        Sid      = "DecryptSecretsAndQueueDataKeys"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [var.data_kms_key_arn]
        Condition = {
          StringEquals = {
            "kms:ViaService" = [
              "secretsmanager.${var.region}.amazonaws.com",
              "sqs.${var.region}.amazonaws.com",
            ]
          }
        }
      },
      {
        Sid       = "QueueDataKeys"
        Effect    = "Allow"
        Action    = ["kms:GenerateDataKey"]
        Resource  = [var.data_kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "sqs.${var.region}.amazonaws.com" } }
      },
      {
        Sid      = "EnqueueWork"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
        Resource = [var.queue_arn]
      },
      {
        # Only with the exact encryption context the runner will present.
        Sid      = "SealWorkSecret"
        Effect   = "Allow"
        Action   = ["kms:Encrypt"]
        Resource = [var.work_secret_kms_key_arn]
        Condition = {
          "ForAllValues:StringEquals" = { "kms:EncryptionContextKeys" = local.encryption_context_keys }
          Null = {
            "kms:EncryptionContextKeys"        = "false"
            "kms:EncryptionContext:work_id"    = "false"
            "kms:EncryptionContext:session_id" = "false"
          }
          StringEquals = { "kms:EncryptionContext:environment_id" = var.anthropic_environment_id }
        }
      },
    ],
    var.capacity_check ? [
      {
        # ListTasks has no task-level resource; it is scoped to the cluster by condition.
        Sid       = "CountRunnerTasks"
        Effect    = "Allow"
        Action    = ["ecs:ListTasks"]
        Resource  = ["*"]
        Condition = { ArnEquals = { "ecs:cluster" = var.ecs_cluster_arn } }
      },
    ] : [],
  )

  webhook_statements = concat(
    [
      {
        Sid      = "ReadSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [var.environment_key_secret_arn, var.webhook_signing_key_secret_arn]
      },
    ],
    local.drain_statements,
  )

  sweep_statements = concat(
    [
      {
        Sid      = "ReadEnvironmentKey"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [var.environment_key_secret_arn]
      },
    ],
    local.drain_statements,
  )

  function_url = var.endpoint_type == "function_url"
  http_api     = var.endpoint_type == "http_api"
}

module "webhook" {
  source = "../lambda-function"

  function_name         = "${var.name}-webhook"
  description           = "Claude Managed Agents webhook: verify, drain the work queue, hand sessions to SQS"
  zip_path              = var.webhook_zip_path
  ignore_code_changes   = var.ignore_code_changes
  architecture          = var.architecture
  memory_size           = var.memory_size
  timeout               = var.webhook_timeout
  reserved_concurrency  = var.webhook_reserved_concurrency
  environment           = var.webhook_environment
  log_retention_in_days = var.log_retention_in_days
  log_kms_key_arn       = var.log_kms_key_arn
  log_level             = var.log_level
  tracing_mode          = var.tracing_mode
  policy_statements     = local.webhook_statements
  tags                  = var.tags
}

module "sweep" {
  source = "../lambda-function"

  function_name         = "${var.name}-sweep"
  description           = "Claude Managed Agents sweep: scheduled drain (missed webhooks, lapsed leases)"
  zip_path              = var.sweep_zip_path
  ignore_code_changes   = var.ignore_code_changes
  architecture          = var.architecture
  memory_size           = var.memory_size
  timeout               = var.sweep_timeout
  reserved_concurrency  = var.sweep_reserved_concurrency
  environment           = var.sweep_environment
  log_retention_in_days = var.log_retention_in_days
  log_kms_key_arn       = var.log_kms_key_arn
  log_level             = var.log_level
  tracing_mode          = var.tracing_mode
  policy_statements     = local.sweep_statements
  tags                  = var.tags
}

################################################################################
# HTTP endpoint: Function URL
################################################################################

# Public on purpose: Anthropic cannot sign AWS requests; it signs each delivery
# (Standard Webhooks HMAC) and the function verifies it before doing anything. The
# provider adds the lambda:InvokeFunctionUrl permission for AuthType NONE itself; see
# infra/README.md for the lambda:InvokeFunction statement URLs created since October
# 2025 also need.
resource "aws_lambda_function_url" "webhook" {
  #checkov:skip=CKV_AWS_258:Anthropic signs every delivery (Standard Webhooks HMAC-SHA256, verified in the function before anything else); it cannot sign AWS IAM requests.
  count = local.function_url ? 1 : 0

  function_name      = module.webhook.function_name
  authorization_type = "NONE"
  invoke_mode        = "BUFFERED"
}

################################################################################
# HTTP endpoint: API Gateway HTTP API
################################################################################

resource "aws_apigatewayv2_api" "webhook" {
  count = local.http_api ? 1 : 0

  name          = "${var.name}-webhook"
  description   = "Claude Managed Agents webhook endpoint"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "webhook" {
  count = local.http_api ? 1 : 0

  api_id                 = aws_apigatewayv2_api.webhook[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = module.webhook.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = min(30000, (var.webhook_timeout + 1) * 1000)
}

resource "aws_apigatewayv2_route" "webhook" {
  #checkov:skip=CKV_AWS_309:Anthropic signs every delivery (Standard Webhooks HMAC-SHA256, verified in the function); it cannot present IAM or JWT credentials.
  count = local.http_api ? 1 : 0

  api_id             = aws_apigatewayv2_api.webhook[0].id
  route_key          = "POST /"
  authorization_type = "NONE"
  target             = "integrations/${aws_apigatewayv2_integration.webhook[0].id}"
}

resource "aws_cloudwatch_log_group" "http_api" {
  #checkov:skip=CKV_AWS_338:Retention is a variable (log_retention_in_days, default 30 days).
  count = local.http_api ? 1 : 0

  name              = "/aws/apigateway/${var.name}-webhook"
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_apigatewayv2_stage" "webhook" {
  count = local.http_api ? 1 : 0

  api_id      = aws_apigatewayv2_api.webhook[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.http_api_throttling_burst_limit
    throttling_rate_limit  = var.http_api_throttling_rate_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_api[0].arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      httpMethod         = "$context.httpMethod"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integrationStatus"
      integrationLatency = "$context.integrationLatency"
      sourceIp           = "$context.identity.sourceIp"
    })
  }

  tags = var.tags
}

resource "aws_lambda_permission" "http_api" {
  count = local.http_api ? 1 : 0

  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = module.webhook.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.webhook[0].execution_arn}/*/POST/*"
}

################################################################################
# Sweep schedule
################################################################################

resource "aws_iam_role" "scheduler" {
  count = var.create_sweep_schedule ? 1 : 0

  name        = "${var.name}-sweep-scheduler"
  description = "EventBridge Scheduler: invoke the ${var.name}-sweep function"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "scheduler.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "scheduler" {
  count = var.create_sweep_schedule ? 1 : 0

  name = "invoke-sweep"
  role = aws_iam_role.scheduler[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "InvokeSweep"
      Effect   = "Allow"
      Action   = ["lambda:InvokeFunction"]
      Resource = [module.sweep.function_arn, "${module.sweep.function_arn}:*"]
    }]
  })
}

resource "aws_scheduler_schedule" "sweep" {
  #checkov:skip=CKV_AWS_297:The schedule's only payload is the constant "{}"; a customer managed key would protect nothing and add KMS permissions to the scheduler role.
  count = var.create_sweep_schedule ? 1 : 0

  name                = "${var.name}-sweep"
  description         = "Drain the Claude Managed Agents work queue: missed webhooks, lapsed leases"
  schedule_expression = var.sweep_schedule_expression
  state               = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = module.sweep.function_arn
    role_arn = aws_iam_role.scheduler[0].arn
    input    = "{}"

    # A failed sweep is superseded by the next one.
    retry_policy {
      maximum_retry_attempts       = 0
      maximum_event_age_in_seconds = 60
    }
  }
}

# Asynchronous invocations of the sweep: no retries either.
resource "aws_lambda_function_event_invoke_config" "sweep" {
  function_name                = module.sweep.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}
