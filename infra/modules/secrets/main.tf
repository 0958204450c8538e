# Two customer managed keys with different audiences:
#
# * data: encryption at rest of the SQS queues, the Secrets Manager secrets, the
#   CloudWatch log groups and the ECR repository. Every role that reads or writes one
#   of those resources gets kms:Decrypt / kms:GenerateDataKey on it through the
#   service (kms:ViaService), never directly.
# * work_secret: the envelope of the per-session work secret. The webhook and the sweep
#   may only kms:Encrypt with it; the runner task role is the only principal allowed to
#   kms:Decrypt (an explicit Deny in the key policy for everyone else, administrators
#   included), always under the encryption context {environment_id, work_id,
#   session_id}. The dispatcher never holds a permission on it.

locals {
  root_arn = "arn:${var.partition}:iam::${var.account_id}:root"

  # The account root statement is the standard "enable IAM policies" statement: without
  # it the key becomes unmanageable. It is the only wildcard action in this stack.
  enable_iam_policies = {
    Sid       = "EnableIAMPolicies"
    Effect    = "Allow"
    Principal = { AWS = local.root_arn }
    Action    = "kms:*"
    Resource  = "*"
  }

  data_key_policy = {
    Version = "2012-10-17"
    Statement = [
      local.enable_iam_policies,
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt",
          "kms:Decrypt",
          "kms:ReEncryptFrom",
          "kms:ReEncryptTo",
          "kms:GenerateDataKey",
          "kms:GenerateDataKeyWithoutPlaintext",
          "kms:DescribeKey",
        ]
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              for p in var.log_group_name_patterns :
              "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:${p}"
            ]
          }
        }
      },
    ]
  }

  work_secret_key_policy = {
    Version = "2012-10-17"
    Statement = [
      local.enable_iam_policies,
      {
        Sid       = "DecryptOnlyByTheRunner"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = "kms:Decrypt"
        Resource  = "*"
        Condition = {
          StringNotEquals = {
            "aws:PrincipalArn" = var.work_secret_decrypt_principal_arns
          }
        }
      },
    ]
  }
}

resource "aws_kms_key" "data" {
  description             = "${var.name}: SQS, Secrets Manager, CloudWatch Logs and ECR encryption at rest"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days
  policy                  = jsonencode(local.data_key_policy)
  tags                    = var.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name}-data"
  target_key_id = aws_kms_key.data.key_id
}

resource "aws_kms_key" "work_secret" {
  description             = "${var.name}: envelope of the per-session work secret (webhook encrypts, runner decrypts)"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days
  tags                    = var.tags
}

# A separate resource: the policy names the runner's task role, which is created after
# this key (the task role's own policy names the key).
resource "aws_kms_key_policy" "work_secret" {
  key_id = aws_kms_key.work_secret.id
  policy = jsonencode(local.work_secret_key_policy)
}

resource "aws_kms_alias" "work_secret" {
  name          = "alias/${var.name}-work-secret"
  target_key_id = aws_kms_key.work_secret.key_id
}

# Values are never set by Terraform (they would land in the state): put them out of
# band, see infra/README.md ("Fill the secrets").
resource "aws_secretsmanager_secret" "environment_key" {
  #checkov:skip=CKV2_AWS_57:The environment key is issued in the Claude Console; there is no API a rotation Lambda could call. Rotate it in the Console and put the new value (README "Rotate").
  name                    = "${var.name}/environment-key"
  description             = "Claude Managed Agents environment key (sk-ant-...); read by the webhook and sweep Lambdas only."
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret" "webhook_signing_key" {
  #checkov:skip=CKV2_AWS_57:The webhook signing secret (whsec_...) is issued in the Claude Console; there is no API a rotation Lambda could call. Rotate it in the Console and put the new value (README "Rotate").
  name                    = "${var.name}/webhook-signing-key"
  description             = "Claude Managed Agents webhook signing secret (whsec_...); read by the webhook Lambda only."
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_in_days
  tags                    = var.tags
}
