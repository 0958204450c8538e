variable "name" {
  description = "Name prefix of every resource (KMS aliases, secret names)."
  type        = string
}

variable "partition" {
  description = "AWS partition (aws, aws-cn, aws-us-gov)."
  type        = string
}

variable "region" {
  description = "AWS Region the stack is deployed in."
  type        = string
}

variable "account_id" {
  description = "AWS account id the stack is deployed in."
  type        = string
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before a destroyed KMS key is deleted (7-30 days)."
  type        = number
  default     = 30
}

variable "secret_recovery_window_in_days" {
  description = "Days a destroyed secret stays recoverable (0 deletes at once, else 7-30)."
  type        = number
  default     = 30
}

variable "log_group_name_patterns" {
  description = "CloudWatch Logs log group names (wildcards allowed) that may use the data key; goes into the key policy."
  type        = list(string)
}

variable "work_secret_decrypt_principal_arns" {
  description = "IAM role ARNs allowed to kms:Decrypt with the work-secret key (the runner task role). Every other principal is denied by the key policy."
  type        = list(string)
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
