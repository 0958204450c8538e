# One Rust function on provided.al2023: its role (inline least-privilege policy), its
# log group (KMS, retention) and the function itself, JSON logs into that group.

locals {
  log_group_name = "/aws/lambda/${var.function_name}"

  statements = concat(
    [
      {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.this.arn}:*"]
      },
    ],
    var.tracing_mode == "Active" ? [
      {
        # X-Ray has no resource-level permissions for these two actions.
        Sid      = "XRayWrite"
        Effect   = "Allow"
        Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
        Resource = ["*"]
      },
    ] : [],
    var.policy_statements,
  )

  policy = {
    Version   = "2012-10-17"
    Statement = local.statements
  }
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Retention is a variable (log_retention_in_days, default 30 days): a year of per-invocation logs is a cost the operator should opt into.
  name              = local.log_group_name
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role" "this" {
  name        = var.function_name
  description = "Execution role of the ${var.function_name} Lambda function"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "least-privilege"
  role   = aws_iam_role.this.id
  policy = jsonencode(local.policy)
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:The functions call only public endpoints (the Claude API and AWS APIs) and hold no VPC resource; a VPC would add a NAT gateway and cold-start cost for no isolation gain.
  #checkov:skip=CKV_AWS_272:Zips are built locally by cargo lambda; AWS Signer code signing is out of scope (no signing profile in this stack). Integrity: source_code_hash of the local zip.
  #checkov:skip=CKV_AWS_173:The environment holds only names, ARNs and URLs (the secrets are in Secrets Manager); Lambda encrypts it at rest with an AWS managed key.
  #checkov:skip=CKV_AWS_116:No asynchronous failure to capture: webhook is synchronous (HTTP), dispatcher reads SQS (the queue's DLQ), sweep runs every minute with retries off (the next run supersedes).
  function_name                  = var.function_name
  description                    = var.description
  role                           = aws_iam_role.this.arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  filename                       = var.zip_path
  source_code_hash               = var.ignore_code_changes || !fileexists(var.zip_path) ? null : filebase64sha256(var.zip_path)
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrency == null ? -1 : var.reserved_concurrency

  environment {
    variables = var.environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.this.name
    application_log_level = var.log_level
    system_log_level      = "WARN"
  }

  tracing_config {
    mode = var.tracing_mode
  }

  tags = var.tags

  # The role must be able to write logs (and, for the dispatcher, read the queue)
  # before the function runs.
  depends_on = [aws_iam_role_policy.this]

  lifecycle {
    precondition {
      condition     = fileexists(var.zip_path)
      error_message = "No deployment zip at ${var.zip_path}. Build it first: cargo lambda build --profile lambda --output-format zip -p webhook --bin webhook --bin sweep, and -p dispatcher --bin dispatcher (infra/README.md, step 1)."
    }
  }
}
