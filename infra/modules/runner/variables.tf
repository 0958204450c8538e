variable "name" {
  description = "Name prefix: cluster <name>, family <name>-runner, repository <name>-runner."
  type        = string
}

variable "partition" {
  description = "AWS partition."
  type        = string
}

variable "region" {
  description = "AWS Region."
  type        = string
}

variable "account_id" {
  description = "AWS account id."
  type        = string
}

variable "anthropic_environment_id" {
  description = "The environment id (pins kms:EncryptionContext:environment_id in the task role)."
  type        = string
}

variable "create_ecr_repository" {
  description = "Create the ECR repository for the runner image."
  type        = bool
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete the repository with its images."
  type        = bool
}

variable "ecr_image_retention_count" {
  description = "Tagged images kept by the lifecycle policy."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key of the repository and the log group."
  type        = string
}

variable "image_uri" {
  description = "Runner image (null: <repository>:<image_tag>)."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the runner image in the created repository."
  type        = string
}

variable "cpu" {
  description = "Task CPU units."
  type        = number
}

variable "memory" {
  description = "Task memory (MiB)."
  type        = number
}

variable "ephemeral_storage_gib" {
  description = "Task ephemeral storage (GiB, 20-200)."
  type        = number
}

variable "architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64."
  type        = string
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL."
  type        = number
}

variable "max_idle" {
  description = "The runner's --max-idle."
  type        = string
}

variable "environment" {
  description = "Static environment of the runner container (names the runner reads, never credentials)."
  type        = map(string)
}

variable "readonly_root_filesystem" {
  description = "Read-only root filesystem with bind-mount volumes for /workspace, /mnt/memory, /tmp and /home/runner."
  type        = bool
}

variable "container_insights" {
  description = "Container Insights setting of the cluster: enabled, enhanced or disabled."
  type        = string
  default     = "enabled"
}

variable "log_retention_in_days" {
  description = "Retention of the runner log group."
  type        = number
}

variable "work_secret_kms_key_arn" {
  description = "The work-secret key, the only thing the task role may use."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
