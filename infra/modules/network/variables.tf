variable "name" {
  description = "Name prefix of every resource."
  type        = string
}

variable "region" {
  description = "AWS Region (for the VPC endpoint service names)."
  type        = string
}

variable "vpc_id" {
  description = "VPC the runner tasks (and the optional endpoints) live in."
  type        = string
}

variable "create_security_group" {
  description = "Create the runner tasks' security group (egress HTTPS only). False: pass security_group_ids."
  type        = bool
  default     = true
}

variable "security_group_ids" {
  description = "Existing security groups for the runner tasks (used when create_security_group is false)."
  type        = list(string)
  default     = []
}

variable "egress_cidr_blocks" {
  description = "IPv4 destinations the runner tasks may reach on TCP 443 (the Claude API, the AWS APIs, git remotes...)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "egress_ipv6_cidr_blocks" {
  description = "IPv6 destinations the runner tasks may reach on TCP 443."
  type        = list(string)
  default     = []
}

variable "create_vpc_endpoints" {
  description = "Create interface endpoints (ecr.api, ecr.dkr, logs, kms) and an S3 gateway endpoint, so tasks in private subnets reach AWS without a NAT gateway."
  type        = bool
  default     = false
}

variable "endpoint_subnet_ids" {
  description = "Subnets of the interface endpoints (one per Availability Zone)."
  type        = list(string)
  default     = []
}

variable "route_table_ids" {
  description = "Route tables of the private subnets, for the S3 gateway endpoint (ECR image layers are served from S3)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
