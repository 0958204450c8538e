################################################################################
# General
################################################################################

variable "name" {
  description = "Name prefix of every resource (functions <name>-webhook, <name>-sweep, <name>-dispatcher; cluster <name>; queue <name>-work). Lowercase letters, digits and hyphens."
  type        = string
  default     = "cma"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 characters: a lowercase letter, then lowercase letters, digits or hyphens."
  }
}

variable "tags" {
  description = "Tags applied to every resource that supports tags."
  type        = map(string)
  default     = {}
}

variable "anthropic_environment_id" {
  description = "ID of the Claude Managed Agents self-hosted environment (env_...) whose work queue this stack serves."
  type        = string

  validation {
    condition     = can(regex("^env_[A-Za-z0-9_-]+$", var.anthropic_environment_id))
    error_message = "anthropic_environment_id must look like env_..."
  }
}

variable "anthropic_base_url" {
  description = "Claude API base URL (ANTHROPIC_BASE_URL of the functions, passed on to the runner). null: the default https://api.anthropic.com."
  type        = string
  default     = null

  validation {
    condition     = var.anthropic_base_url == null || can(regex("^https?://[^[:space:]]+$", var.anthropic_base_url))
    error_message = "anthropic_base_url must start with https:// (or http:// for a local fake)."
  }
}

################################################################################
# Lambda functions (shared)
################################################################################

variable "lambda_architecture" {
  description = "Instruction set of the three Lambda zips: x86_64 (cargo lambda build default) or arm64 (cargo lambda build --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "webhook_zip_path" {
  description = "Zip of the webhook function. null: target/lambda/webhook/bootstrap.zip of this repository (cargo lambda build --profile lambda --output-format zip)."
  type        = string
  default     = null
}

variable "sweep_zip_path" {
  description = "Zip of the sweep function. null: target/lambda/sweep/bootstrap.zip of this repository."
  type        = string
  default     = null
}

variable "dispatcher_zip_path" {
  description = "Zip of the dispatcher function. null: target/lambda/dispatcher/bootstrap.zip of this repository."
  type        = string
  default     = null
}

variable "ignore_lambda_code_changes" {
  description = "Upload the zips only when the functions are created; code updates are then left to `cargo lambda deploy` and later applies never replace that code."
  type        = bool
  default     = false
}

variable "lambda_log_level" {
  description = "Application log level of the three functions (AWS_LAMBDA_LOG_LEVEL, which they read): TRACE, DEBUG, INFO, WARN, ERROR or FATAL."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.lambda_log_level)
    error_message = "lambda_log_level must be TRACE, DEBUG, INFO, WARN, ERROR or FATAL."
  }
}

variable "lambda_tracing_mode" {
  description = "X-Ray tracing of the functions: PassThrough (no segments, no X-Ray permission) or Active (adds xray:PutTraceSegments/PutTelemetryRecords, which take no resource ARN)."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.lambda_tracing_mode)
    error_message = "lambda_tracing_mode must be PassThrough or Active."
  }
}

variable "log_retention_in_days" {
  description = "Retention of every log group of the stack (functions, HTTP API, runner)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_in_days)
    error_message = "log_retention_in_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

################################################################################
# Webhook and sweep
################################################################################

variable "webhook_endpoint_type" {
  description = "How Anthropic reaches the webhook: http_api (API Gateway HTTP API, POST / only, throttled, access-logged) or function_url (Lambda Function URL, AuthType NONE; see README for the extra permission statement on older providers)."
  type        = string
  default     = "http_api"

  validation {
    condition     = contains(["http_api", "function_url"], var.webhook_endpoint_type)
    error_message = "webhook_endpoint_type must be http_api or function_url."
  }
}

variable "webhook_timeout" {
  description = "Timeout of the webhook function (s). The drain stops before it; with http_api it must stay under API Gateway's 30 s integration limit."
  type        = number
  default     = 25

  validation {
    condition     = var.webhook_timeout >= 3 && var.webhook_timeout <= 900
    error_message = "webhook_timeout must be 3-900 seconds."
  }

  validation {
    condition     = var.webhook_endpoint_type != "http_api" || var.webhook_timeout <= 29
    error_message = "With webhook_endpoint_type = http_api, webhook_timeout must be at most 29 s (API Gateway integration limit: 30 s)."
  }
}

variable "sweep_timeout" {
  description = "Timeout of the sweep function (s); keep it below the schedule interval."
  type        = number
  default     = 50

  validation {
    condition     = var.sweep_timeout >= 3 && var.sweep_timeout <= 900
    error_message = "sweep_timeout must be 3-900 seconds."
  }
}

variable "webhook_memory_size" {
  description = "Memory (MB) of the webhook and sweep functions."
  type        = number
  default     = 256

  validation {
    condition     = var.webhook_memory_size >= 128 && var.webhook_memory_size <= 10240
    error_message = "webhook_memory_size must be 128-10240 MB."
  }
}

variable "webhook_reserved_concurrency" {
  description = "Reserved concurrency of the webhook function (caps concurrent deliveries being drained). null: unreserved."
  type        = number
  default     = 10

  validation {
    condition     = var.webhook_reserved_concurrency == null || try(var.webhook_reserved_concurrency >= 1, false)
    error_message = "webhook_reserved_concurrency must be null or at least 1."
  }
}

variable "sweep_reserved_concurrency" {
  description = "Reserved concurrency of the sweep function. null: unreserved."
  type        = number
  default     = 1

  validation {
    condition     = var.sweep_reserved_concurrency == null || try(var.sweep_reserved_concurrency >= 1, false)
    error_message = "sweep_reserved_concurrency must be null or at least 1."
  }
}

variable "http_api_throttling_burst_limit" {
  description = "HTTP API only: burst limit of the webhook route."
  type        = number
  default     = 50
}

variable "http_api_throttling_rate_limit" {
  description = "HTTP API only: steady-state requests per second of the webhook route."
  type        = number
  default     = 25
}

variable "create_sweep_schedule" {
  description = "Create the EventBridge Scheduler schedule that invokes the sweep (missed webhooks, lapsed leases)."
  type        = bool
  default     = true
}

variable "sweep_schedule_expression" {
  description = "When the sweep runs (EventBridge Scheduler expression)."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate|cron|at)\\(.+\\)$", var.sweep_schedule_expression))
    error_message = "sweep_schedule_expression must be rate(...), cron(...) or at(...)."
  }
}

variable "max_concurrent_sessions" {
  description = "Cap on sessions in flight (queued + running tasks); the webhook stops claiming at the cap (MAX_CONCURRENT_SESSIONS). null: no cap and no capacity check."
  type        = number
  default     = 10

  validation {
    condition     = var.max_concurrent_sessions == null || try(var.max_concurrent_sessions >= 1, false)
    error_message = "max_concurrent_sessions must be null or at least 1."
  }
}

variable "reclaim_older_than_ms" {
  description = "RECLAIM_OLDER_THAN_MS of the drain (un-acked items older than this are reclaimed). null: the code's default (15000)."
  type        = number
  default     = null

  validation {
    condition     = var.reclaim_older_than_ms == null || try(var.reclaim_older_than_ms >= 1 && var.reclaim_older_than_ms <= 3600000, false)
    error_message = "reclaim_older_than_ms must be null or 1-3600000."
  }
}

variable "max_drain_items" {
  description = "MAX_DRAIN_ITEMS: items one invocation claims at most. null: the code's default (25)."
  type        = number
  default     = null

  validation {
    condition     = var.max_drain_items == null || try(var.max_drain_items >= 1 && var.max_drain_items <= 1000, false)
    error_message = "max_drain_items must be null or 1-1000."
  }
}

################################################################################
# Queue
################################################################################

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the work queue. null: 6 x dispatcher_timeout. Must be at least 6 x dispatcher_timeout (AWS guidance for Lambda event sources)."
  type        = number
  default     = null

  validation {
    condition     = var.queue_visibility_timeout_seconds == null || try(var.queue_visibility_timeout_seconds >= 6 * var.dispatcher_timeout && var.queue_visibility_timeout_seconds <= 43200, false)
    error_message = "queue_visibility_timeout_seconds must be at least 6 x dispatcher_timeout and at most 43200 (12 h)."
  }
}

variable "queue_max_receive_count" {
  description = "Receives before a work message moves to the dead-letter queue. The dispatcher's MAX_RECEIVE_COUNT guard is set one above it."
  type        = number
  default     = 5

  validation {
    condition     = var.queue_max_receive_count >= 1 && var.queue_max_receive_count <= 999
    error_message = "queue_max_receive_count must be 1-999."
  }
}

variable "queue_message_retention_seconds" {
  description = "Retention of the work queue (60-1209600 s)."
  type        = number
  default     = 86400

  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds <= 1209600
    error_message = "queue_message_retention_seconds must be 60-1209600."
  }
}

variable "create_dlq_redrive_allow_policy" {
  description = "Attach a redrive allow policy to the dead-letter queue (only the work queue may use it)."
  type        = bool
  default     = true
}

variable "create_queue_alarms" {
  description = "Create CloudWatch alarms on the dead-letter queue's depth and on the work queue's oldest message age."
  type        = bool
  default     = true
}

variable "queue_oldest_message_age_alarm_seconds" {
  description = "Alarm when a claimed session waits longer than this in the work queue."
  type        = number
  default     = 120
}

variable "alarm_actions" {
  description = "ARNs (e.g. an SNS topic) notified when an alarm changes state."
  type        = list(string)
  default     = []
}

################################################################################
# Dispatcher
################################################################################

variable "dispatcher_timeout" {
  description = "Timeout of the dispatcher function (s). The queue's visibility timeout is at least 6 x this."
  type        = number
  default     = 60

  validation {
    condition     = var.dispatcher_timeout >= 10 && var.dispatcher_timeout <= 900
    error_message = "dispatcher_timeout must be 10-900 seconds."
  }
}

variable "dispatcher_memory_size" {
  description = "Memory (MB) of the dispatcher function."
  type        = number
  default     = 256

  validation {
    condition     = var.dispatcher_memory_size >= 128 && var.dispatcher_memory_size <= 10240
    error_message = "dispatcher_memory_size must be 128-10240 MB."
  }
}

variable "dispatcher_batch_size" {
  description = "SQS messages per dispatcher invocation (1-10; the dispatcher launches up to 10 at once)."
  type        = number
  default     = 10

  validation {
    condition     = var.dispatcher_batch_size >= 1 && var.dispatcher_batch_size <= 10
    error_message = "dispatcher_batch_size must be 1-10."
  }
}

variable "dispatcher_maximum_batching_window_in_seconds" {
  description = "How long the event source mapping waits to fill a batch. 0: invoke as soon as a message arrives (lowest start latency)."
  type        = number
  default     = 0

  validation {
    condition     = var.dispatcher_maximum_batching_window_in_seconds >= 0 && var.dispatcher_maximum_batching_window_in_seconds <= 300
    error_message = "dispatcher_maximum_batching_window_in_seconds must be 0-300."
  }
}

variable "dispatcher_maximum_concurrency" {
  description = "Maximum concurrent dispatcher invocations started by the event source mapping (2-1000)."
  type        = number
  default     = 5

  validation {
    condition     = var.dispatcher_maximum_concurrency >= 2 && var.dispatcher_maximum_concurrency <= 1000
    error_message = "dispatcher_maximum_concurrency must be 2-1000."
  }
}

variable "dispatcher_reserved_concurrency" {
  description = "Reserved concurrency of the dispatcher. null: equal to dispatcher_maximum_concurrency. -1: unreserved."
  type        = number
  default     = null

  validation {
    condition     = var.dispatcher_reserved_concurrency == null || try(var.dispatcher_reserved_concurrency == -1 || var.dispatcher_reserved_concurrency >= var.dispatcher_maximum_concurrency, false)
    error_message = "dispatcher_reserved_concurrency must be null, -1, or at least dispatcher_maximum_concurrency (else the event source mapping is throttled)."
  }
}

variable "stale_claim_after_seconds" {
  description = "STALE_CLAIM_AFTER_SECONDS: a claim older than this is dropped instead of launched (its lease has lapsed; the sweep re-claims it). null: the code's default (600)."
  type        = number
  default     = null

  validation {
    condition     = var.stale_claim_after_seconds == null || try(var.stale_claim_after_seconds >= 1 && var.stale_claim_after_seconds <= 86400, false)
    error_message = "stale_claim_after_seconds must be null or 1-86400."
  }
}

variable "capacity_provider_strategy" {
  description = "CAPACITY_PROVIDER_STRATEGY of the dispatcher, NAME:WEIGHT[:BASE],... e.g. FARGATE_SPOT:1,FARGATE:0. null: launch type FARGATE. The cluster has FARGATE and FARGATE_SPOT."
  type        = string
  default     = null

  validation {
    condition     = var.capacity_provider_strategy == null || can(regex("^(FARGATE|FARGATE_SPOT):[0-9]+(:[0-9]+)?(,(FARGATE|FARGATE_SPOT):[0-9]+(:[0-9]+)?)*$", coalesce(var.capacity_provider_strategy, "-")))
    error_message = "capacity_provider_strategy must be NAME:WEIGHT[:BASE] entries of FARGATE / FARGATE_SPOT separated by commas."
  }
}

################################################################################
# Runner (ECR, ECS, Fargate)
################################################################################

variable "create_ecr_repository" {
  description = "Create the ECR repository <name>-runner (scan on push, immutable tags, lifecycle policy, KMS). False: set runner_image_uri."
  type        = bool
  default     = true
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete the repository even if it still holds images."
  type        = bool
  default     = false
}

variable "ecr_image_retention_count" {
  description = "Images the lifecycle policy keeps (untagged ones expire after a day)."
  type        = number
  default     = 20

  validation {
    condition     = var.ecr_image_retention_count >= 1
    error_message = "ecr_image_retention_count must be at least 1."
  }
}

variable "runner_image_uri" {
  description = "Full image URI of the runner (registry/repository:tag or @digest). null: the created repository with runner_image_tag."
  type        = string
  default     = null

  validation {
    condition     = var.runner_image_uri != null || var.create_ecr_repository
    error_message = "Set runner_image_uri when create_ecr_repository is false."
  }
}

variable "runner_image_tag" {
  description = "Tag of the runner image in the created repository. Tags are immutable: push each build under a new tag and apply with it (a new task-definition revision)."
  type        = string
  default     = "v1"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.runner_image_tag))
    error_message = "runner_image_tag must be a valid Docker tag."
  }
}

variable "runner_cpu" {
  description = "CPU units of a runner task (256 = 0.25 vCPU ... 16384 = 16 vCPU)."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.runner_cpu)
    error_message = "runner_cpu must be 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "runner_memory" {
  description = "Memory (MiB) of a runner task; must be a Fargate combination with runner_cpu."
  type        = number
  default     = 2048

  validation {
    condition = (
      var.runner_cpu == 256 ? contains([512, 1024, 2048], var.runner_memory) :
      var.runner_cpu == 512 ? var.runner_memory >= 1024 && var.runner_memory <= 4096 && var.runner_memory % 1024 == 0 :
      var.runner_cpu == 1024 ? var.runner_memory >= 2048 && var.runner_memory <= 8192 && var.runner_memory % 1024 == 0 :
      var.runner_cpu == 2048 ? var.runner_memory >= 4096 && var.runner_memory <= 16384 && var.runner_memory % 1024 == 0 :
      var.runner_cpu == 4096 ? var.runner_memory >= 8192 && var.runner_memory <= 30720 && var.runner_memory % 1024 == 0 :
      var.runner_cpu == 8192 ? var.runner_memory >= 16384 && var.runner_memory <= 61440 && var.runner_memory % 4096 == 0 :
      var.runner_memory >= 32768 && var.runner_memory <= 122880 && var.runner_memory % 8192 == 0
    )
    error_message = "runner_memory is not a valid Fargate memory size for runner_cpu (see the Fargate task size table)."
  }
}

variable "runner_ephemeral_storage_gib" {
  description = "Ephemeral storage of a runner task (GiB, 20-200; 20 is Fargate's free default). Holds the image, /workspace and the writable layer."
  type        = number
  default     = 20

  validation {
    condition     = var.runner_ephemeral_storage_gib >= 20 && var.runner_ephemeral_storage_gib <= 200
    error_message = "runner_ephemeral_storage_gib must be 20-200."
  }
}

variable "runner_architecture" {
  description = "CPU architecture of the runner image: X86_64 or ARM64 (Graviton, about 20 % cheaper per vCPU-hour; needs an arm64 build)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.runner_architecture)
    error_message = "runner_architecture must be X86_64 or ARM64."
  }
}

variable "runner_stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL for a runner (its orderly teardown flushes memory stores for up to ~40 s). Fargate allows at most 120."
  type        = number
  default     = 120

  validation {
    condition     = var.runner_stop_timeout >= 45 && var.runner_stop_timeout <= 120
    error_message = "runner_stop_timeout must be 45-120 seconds (the teardown needs ~40 s)."
  }
}

variable "runner_max_idle" {
  description = "The runner's --max-idle: it exits (and the task stops billing) after this long idle at end_turn. 0 disables (not recommended on Fargate)."
  type        = string
  default     = "60s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$", var.runner_max_idle))
    error_message = "runner_max_idle must be a duration like 60s, 500ms, 2m or 0."
  }
}

variable "runner_log_level" {
  description = "RUST_LOG of the runner (a tracing filter such as info, debug, runner=debug)."
  type        = string
  default     = "info"
}

variable "runner_memory_sync_interval_seconds" {
  description = "MEMORY_SYNC_INTERVAL_SECONDS of the runner (>= 5). null: the code's default (15)."
  type        = number
  default     = null

  validation {
    condition     = var.runner_memory_sync_interval_seconds == null || try(var.runner_memory_sync_interval_seconds >= 5, false)
    error_message = "runner_memory_sync_interval_seconds must be null or at least 5."
  }
}

variable "runner_memory_delete_mode" {
  description = "MEMORY_DELETE_MODE of the runner: enabled, log_only or disabled. null: the code's default (enabled)."
  type        = string
  default     = null

  validation {
    condition     = var.runner_memory_delete_mode == null || contains(["enabled", "log_only", "disabled"], coalesce(var.runner_memory_delete_mode, "enabled"))
    error_message = "runner_memory_delete_mode must be null, enabled, log_only or disabled."
  }
}

variable "runner_readonly_root_filesystem" {
  description = "Read-only root filesystem for the runner, with bind-mount volumes on /workspace, /mnt/memory, /tmp and /home/runner. Requires an image that declares those paths as VOLUMEs owned by uid 10001 (Fargate creates bind mounts root-owned otherwise); the image in functions/runner does not yet."
  type        = bool
  default     = false
}

variable "container_insights" {
  description = "Container Insights of the cluster: enabled, enhanced or disabled."
  type        = string
  default     = "enabled"

  validation {
    condition     = contains(["enabled", "enhanced", "disabled"], var.container_insights)
    error_message = "container_insights must be enabled, enhanced or disabled."
  }
}

################################################################################
# Network
################################################################################

variable "vpc_id" {
  description = "Existing VPC of the runner tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Existing subnets the runner tasks start in (private subnets with a NAT gateway by default; public subnets with assign_public_ip = true)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && length(var.subnet_ids) <= 16 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-zA-Z]+$", s))])
    error_message = "subnet_ids must hold 1-16 subnet ids (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give runner tasks a public IP (simple setups: public subnets, no NAT gateway). Inbound traffic is still refused by the security group."
  type        = bool
  default     = false
}

variable "create_security_group" {
  description = "Create the runner tasks' security group (no ingress, egress TCP 443 only). False: pass security_group_ids."
  type        = bool
  default     = true
}

variable "security_group_ids" {
  description = "Additional (or, with create_security_group = false, the only) security groups of the runner tasks."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.security_group_ids : can(regex("^sg-[0-9a-zA-Z]+$", s))])
    error_message = "security_group_ids must be security group ids (sg-...)."
  }
}

variable "egress_cidr_blocks" {
  description = "IPv4 destinations runner tasks may reach on TCP 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "egress_ipv6_cidr_blocks" {
  description = "IPv6 destinations runner tasks may reach on TCP 443."
  type        = list(string)
  default     = []
}

variable "create_vpc_endpoints" {
  description = "Create VPC endpoints (interface: ecr.api, ecr.dkr, logs, kms; gateway: s3) so tasks in private subnets need no NAT gateway for AWS traffic (the Claude API still needs egress)."
  type        = bool
  default     = false
}

variable "vpc_endpoint_subnet_ids" {
  description = "Subnets of the interface endpoints (one per AZ). null: subnet_ids."
  type        = list(string)
  default     = null
}

variable "private_route_table_ids" {
  description = "Route tables of the task subnets, for the S3 gateway endpoint (only with create_vpc_endpoints)."
  type        = list(string)
  default     = []
}

################################################################################
# Keys and secrets
################################################################################

variable "kms_deletion_window_in_days" {
  description = "Waiting period (7-30 days) before a destroyed KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30
    error_message = "kms_deletion_window_in_days must be 7-30."
  }
}

variable "secret_recovery_window_in_days" {
  description = "Days a destroyed secret stays recoverable (0: delete at once, e.g. for throw-away stacks; else 7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_in_days == 0 || (var.secret_recovery_window_in_days >= 7 && var.secret_recovery_window_in_days <= 30)
    error_message = "secret_recovery_window_in_days must be 0 or 7-30."
  }
}

variable "work_secret_decrypt_principal_arns" {
  description = "Extra IAM role ARNs allowed to decrypt work secrets besides the runner task role (e.g. a break-glass role). Everyone else is denied by the key policy."
  type        = list(string)
  default     = []
}
