# Claude Managed Agents self-hosted backend on AWS: webhook + sweep (Lambda), work queue
# (SQS + DLQ), dispatcher (Lambda), runner (ECR + ECS Fargate), network (security group,
# optional VPC endpoints), keys and secrets. One `terraform apply` creates all of it.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id

  repository_root = "${path.module}/.."
  zip_paths = {
    webhook    = coalesce(var.webhook_zip_path, "${local.repository_root}/target/lambda/webhook/bootstrap.zip")
    sweep      = coalesce(var.sweep_zip_path, "${local.repository_root}/target/lambda/sweep/bootstrap.zip")
    dispatcher = coalesce(var.dispatcher_zip_path, "${local.repository_root}/target/lambda/dispatcher/bootstrap.zip")
  }

  queue_visibility_timeout_seconds = coalesce(var.queue_visibility_timeout_seconds, 6 * var.dispatcher_timeout)
  capacity_check                   = var.max_concurrent_sessions != null
  cluster_name                     = var.name
  task_family                      = "${var.name}-runner"

  # Environment variables. Only names from functions/<fn>/env-vars.txt (what the code
  # reads; tests/env_vars.tftest.hcl checks it), and never the literal-secret variants
  # (ANTHROPIC_WEBHOOK_SIGNING_KEY, ANTHROPIC_ENVIRONMENT_KEY, ALLOW_PLAINTEXT_WORK_SECRET):
  # secrets come from Secrets Manager, the work secret is always KMS-encrypted.
  drain_environment = merge(
    {
      ANTHROPIC_ENVIRONMENT_ID   = var.anthropic_environment_id
      ENVIRONMENT_KEY_SECRET_ARN = module.secrets.environment_key_secret_arn
      QUEUE_URL                  = module.queue.queue_url
      WORK_SECRET_KMS_KEY_ID     = module.secrets.work_secret_kms_key_arn
    },
    var.anthropic_base_url == null ? {} : { ANTHROPIC_BASE_URL = var.anthropic_base_url },
    local.capacity_check ? {
      MAX_CONCURRENT_SESSIONS = tostring(var.max_concurrent_sessions)
      ECS_CLUSTER             = local.cluster_name
      RUNNER_TASK_FAMILY      = local.task_family
    } : {},
    var.reclaim_older_than_ms == null ? {} : { RECLAIM_OLDER_THAN_MS = tostring(var.reclaim_older_than_ms) },
    var.max_drain_items == null ? {} : { MAX_DRAIN_ITEMS = tostring(var.max_drain_items) },
  )

  webhook_environment = merge(local.drain_environment, {
    WEBHOOK_SIGNING_KEY_SECRET_ARN = module.secrets.webhook_signing_key_secret_arn
  })

  # The sweep never gets the signing secret.
  sweep_environment = local.drain_environment

  dispatcher_environment = merge(
    {
      ECS_CLUSTER            = local.cluster_name
      RUNNER_TASK_DEFINITION = local.task_family
      RUNNER_CONTAINER_NAME  = module.runner.container_name
      SUBNETS                = join(",", var.subnet_ids)
      SECURITY_GROUPS        = join(",", module.network.task_security_group_ids)
      ASSIGN_PUBLIC_IP       = tostring(var.assign_public_ip)
      QUEUE_URL              = module.queue.queue_url
      # The dispatcher's own receive-count guard, one above the redrive policy, so the
      # DLQ normally gets the message first.
      MAX_RECEIVE_COUNT = tostring(var.queue_max_receive_count + 1)
    },
    var.capacity_provider_strategy == null ? {} : { CAPACITY_PROVIDER_STRATEGY = var.capacity_provider_strategy },
    var.anthropic_base_url == null ? {} : { ANTHROPIC_BASE_URL = var.anthropic_base_url },
    var.stale_claim_after_seconds == null ? {} : { STALE_CLAIM_AFTER_SECONDS = tostring(var.stale_claim_after_seconds) },
  )

  # The container's static environment: tuning only. The dispatcher adds the work item's
  # ids, ANTHROPIC_WORK_SECRET_CIPHERTEXT and ANTHROPIC_BASE_URL per task.
  runner_environment = merge(
    { RUST_LOG = var.runner_log_level },
    var.runner_memory_sync_interval_seconds == null ? {} : { MEMORY_SYNC_INTERVAL_SECONDS = tostring(var.runner_memory_sync_interval_seconds) },
    var.runner_memory_delete_mode == null ? {} : { MEMORY_DELETE_MODE = var.runner_memory_delete_mode },
  )
}

module "secrets" {
  source = "./modules/secrets"

  name                           = var.name
  partition                      = local.partition
  region                         = local.region
  account_id                     = local.account_id
  kms_deletion_window_in_days    = var.kms_deletion_window_in_days
  secret_recovery_window_in_days = var.secret_recovery_window_in_days
  log_group_name_patterns = [
    "/aws/lambda/${var.name}-*",
    "/aws/apigateway/${var.name}-*",
    "/ecs/${var.name}-runner",
  ]
  work_secret_decrypt_principal_arns = concat([module.runner.task_role_arn], var.work_secret_decrypt_principal_arns)
  tags                               = var.tags
}

module "network" {
  source = "./modules/network"

  name                    = var.name
  region                  = local.region
  vpc_id                  = var.vpc_id
  create_security_group   = var.create_security_group
  security_group_ids      = var.security_group_ids
  egress_cidr_blocks      = var.egress_cidr_blocks
  egress_ipv6_cidr_blocks = var.egress_ipv6_cidr_blocks
  create_vpc_endpoints    = var.create_vpc_endpoints
  endpoint_subnet_ids     = coalesce(var.vpc_endpoint_subnet_ids, var.subnet_ids)
  route_table_ids         = var.private_route_table_ids
  tags                    = var.tags
}

module "queue" {
  source = "./modules/queue"

  name                             = "${var.name}-work"
  kms_key_arn                      = module.secrets.data_kms_key_arn
  consumer_timeout_seconds         = var.dispatcher_timeout
  visibility_timeout_seconds       = local.queue_visibility_timeout_seconds
  max_receive_count                = var.queue_max_receive_count
  message_retention_seconds        = var.queue_message_retention_seconds
  create_dlq_redrive_allow_policy  = var.create_dlq_redrive_allow_policy
  create_alarms                    = var.create_queue_alarms
  oldest_message_age_alarm_seconds = var.queue_oldest_message_age_alarm_seconds
  alarm_actions                    = var.alarm_actions
  tags                             = var.tags
}

module "runner" {
  source = "./modules/runner"

  name                      = var.name
  partition                 = local.partition
  region                    = local.region
  account_id                = local.account_id
  anthropic_environment_id  = var.anthropic_environment_id
  create_ecr_repository     = var.create_ecr_repository
  ecr_force_delete          = var.ecr_force_delete
  ecr_image_retention_count = var.ecr_image_retention_count
  kms_key_arn               = module.secrets.data_kms_key_arn
  image_uri                 = var.runner_image_uri
  image_tag                 = var.runner_image_tag
  cpu                       = var.runner_cpu
  memory                    = var.runner_memory
  ephemeral_storage_gib     = var.runner_ephemeral_storage_gib
  architecture              = var.runner_architecture
  stop_timeout              = var.runner_stop_timeout
  max_idle                  = var.runner_max_idle
  environment               = local.runner_environment
  readonly_root_filesystem  = var.runner_readonly_root_filesystem
  container_insights        = var.container_insights
  log_retention_in_days     = var.log_retention_in_days
  work_secret_kms_key_arn   = module.secrets.work_secret_kms_key_arn
  tags                      = var.tags
}

module "webhook" {
  source = "./modules/webhook"

  name                            = var.name
  partition                       = local.partition
  region                          = local.region
  account_id                      = local.account_id
  webhook_zip_path                = local.zip_paths.webhook
  sweep_zip_path                  = local.zip_paths.sweep
  ignore_code_changes             = var.ignore_lambda_code_changes
  architecture                    = var.lambda_architecture
  memory_size                     = var.webhook_memory_size
  webhook_timeout                 = var.webhook_timeout
  sweep_timeout                   = var.sweep_timeout
  webhook_reserved_concurrency    = var.webhook_reserved_concurrency
  sweep_reserved_concurrency      = var.sweep_reserved_concurrency
  webhook_environment             = local.webhook_environment
  sweep_environment               = local.sweep_environment
  log_retention_in_days           = var.log_retention_in_days
  log_kms_key_arn                 = module.secrets.data_kms_key_arn
  log_level                       = var.lambda_log_level
  tracing_mode                    = var.lambda_tracing_mode
  endpoint_type                   = var.webhook_endpoint_type
  http_api_throttling_burst_limit = var.http_api_throttling_burst_limit
  http_api_throttling_rate_limit  = var.http_api_throttling_rate_limit
  create_sweep_schedule           = var.create_sweep_schedule
  sweep_schedule_expression       = var.sweep_schedule_expression
  queue_arn                       = module.queue.queue_arn
  data_kms_key_arn                = module.secrets.data_kms_key_arn
  work_secret_kms_key_arn         = module.secrets.work_secret_kms_key_arn
  environment_key_secret_arn      = module.secrets.environment_key_secret_arn
  webhook_signing_key_secret_arn  = module.secrets.webhook_signing_key_secret_arn
  anthropic_environment_id        = var.anthropic_environment_id
  capacity_check                  = local.capacity_check
  ecs_cluster_arn                 = module.runner.cluster_arn
  tags                            = var.tags
}

module "dispatcher" {
  source = "./modules/dispatcher"

  name                               = var.name
  partition                          = local.partition
  region                             = local.region
  account_id                         = local.account_id
  zip_path                           = local.zip_paths.dispatcher
  ignore_code_changes                = var.ignore_lambda_code_changes
  architecture                       = var.lambda_architecture
  memory_size                        = var.dispatcher_memory_size
  timeout                            = var.dispatcher_timeout
  reserved_concurrency               = var.dispatcher_reserved_concurrency == -1 ? null : coalesce(var.dispatcher_reserved_concurrency, var.dispatcher_maximum_concurrency)
  environment                        = local.dispatcher_environment
  log_retention_in_days              = var.log_retention_in_days
  log_kms_key_arn                    = module.secrets.data_kms_key_arn
  log_level                          = var.lambda_log_level
  tracing_mode                       = var.lambda_tracing_mode
  queue_arn                          = module.queue.queue_arn
  data_kms_key_arn                   = module.secrets.data_kms_key_arn
  ecs_cluster_arn                    = module.runner.cluster_arn
  ecs_cluster_name                   = module.runner.cluster_name
  task_definition_family             = module.runner.task_definition_family
  pass_role_arns                     = [module.runner.task_role_arn, module.runner.execution_role_arn]
  batch_size                         = var.dispatcher_batch_size
  maximum_batching_window_in_seconds = var.dispatcher_maximum_batching_window_in_seconds
  maximum_concurrency                = var.dispatcher_maximum_concurrency
  tags                               = var.tags
}
