variable "region" {
  description = "AWS Region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "aws_endpoint_url" {
  description = "Send every AWS API call to this endpoint (e.g. http://127.0.0.1:5001 for moto) and skip credential, account and metadata checks. null (the default): real AWS, provider untouched."
  type        = string
  default     = null
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "cma"
}

variable "anthropic_environment_id" {
  description = "ID of the self-hosted environment (env_...) from the Claude Console."
  type        = string
}

variable "network_mode" {
  description = "public: runner tasks in public subnets with a public IP (cheapest, no NAT gateway). private: private subnets behind one NAT gateway, plus VPC endpoints for ECR, logs, KMS and S3."
  type        = string
  default     = "public"

  validation {
    condition     = contains(["public", "private"], var.network_mode)
    error_message = "network_mode must be public or private."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the example VPC."
  type        = string
  default     = "10.42.0.0/16"
}

variable "webhook_zip_path" {
  description = "Zip of the webhook function (null: target/lambda/webhook/bootstrap.zip of the repository)."
  type        = string
  default     = null
}

variable "sweep_zip_path" {
  description = "Zip of the sweep function (null: target/lambda/sweep/bootstrap.zip)."
  type        = string
  default     = null
}

variable "dispatcher_zip_path" {
  description = "Zip of the dispatcher function (null: target/lambda/dispatcher/bootstrap.zip)."
  type        = string
  default     = null
}

variable "runner_image_tag" {
  description = "Tag of the runner image pushed to the created repository."
  type        = string
  default     = "v1"
}

variable "webhook_endpoint_type" {
  description = "http_api or function_url."
  type        = string
  default     = "http_api"
}

variable "throwaway" {
  description = "A stack you intend to destroy soon: secrets deleted without recovery window, shortest KMS deletion window, repository deleted with its images."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default = {
    Project   = "cma-selfhosted-aws"
    ManagedBy = "terraform"
  }
}
