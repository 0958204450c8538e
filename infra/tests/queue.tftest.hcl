# The work queue: visibility timeout >= 6 x the dispatcher timeout (validation in the
# root module, precondition in the queue module), redrive to the DLQ, the dispatcher's
# receive-count guard above the redrive count, partial batch responses.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  anthropic_environment_id = "env_01TestEnvironment"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0aaaaaaaaaaaaaaaa"]
  webhook_zip_path         = "tests/fixtures/bootstrap.zip"
  sweep_zip_path           = "tests/fixtures/bootstrap.zip"
  dispatcher_zip_path      = "tests/fixtures/bootstrap.zip"
}

run "defaults" {
  command = apply

  assert {
    condition     = module.queue.visibility_timeout_seconds == 6 * 60
    error_message = "Default visibility timeout must be 6 x the 60 s dispatcher timeout, got ${module.queue.visibility_timeout_seconds}."
  }

  assert {
    condition     = module.queue.redrive_policy.maxReceiveCount == 5 && module.queue.redrive_policy.deadLetterTargetArn == module.queue.dlq_arn
    error_message = "The work queue must redrive to its DLQ after 5 receives."
  }

  assert {
    condition     = module.queue.dlq_redrive_allow_policy.redrivePermission == "byQueue" && module.queue.dlq_redrive_allow_policy.sourceQueueArns == [module.queue.queue_arn]
    error_message = "Only the work queue may use the DLQ."
  }

  assert {
    condition     = output.lambda_environments.dispatcher.MAX_RECEIVE_COUNT == "6"
    error_message = "The dispatcher's MAX_RECEIVE_COUNT guard must sit one above the redrive count."
  }

  assert {
    condition     = module.dispatcher.event_source_mapping.function_response_types == toset(["ReportBatchItemFailures"])
    error_message = "The event source mapping must report batch item failures."
  }

  assert {
    condition     = module.dispatcher.event_source_mapping.batch_size == 10 && module.dispatcher.event_source_mapping.maximum_concurrency == 5
    error_message = "Batch size and maximum concurrency must follow the variables."
  }

  assert {
    condition     = length(output.alarm_names) == 2
    error_message = "DLQ depth and oldest-message-age alarms expected."
  }
}

run "visibility_follows_the_dispatcher_timeout" {
  command = apply

  variables {
    dispatcher_timeout              = 120
    queue_max_receive_count         = 3
    dispatcher_batch_size           = 4
    dispatcher_maximum_concurrency  = 20
    dispatcher_reserved_concurrency = -1
  }

  assert {
    condition     = module.queue.visibility_timeout_seconds == 720
    error_message = "Visibility timeout must follow 6 x dispatcher_timeout."
  }

  assert {
    condition     = module.queue.redrive_policy.maxReceiveCount == 3 && output.lambda_environments.dispatcher.MAX_RECEIVE_COUNT == "4"
    error_message = "queue_max_receive_count must reach the redrive policy and the guard."
  }

  assert {
    condition     = module.dispatcher.event_source_mapping.batch_size == 4 && module.dispatcher.event_source_mapping.maximum_concurrency == 20
    error_message = "Batch size and maximum concurrency must follow the variables."
  }
}

run "explicit_visibility_at_the_minimum_is_accepted" {
  command = plan

  variables {
    dispatcher_timeout               = 90
    queue_visibility_timeout_seconds = 540
  }

  assert {
    condition     = module.queue.visibility_timeout_seconds == 540
    error_message = "An explicit visibility timeout of exactly 6 x must be accepted."
  }
}

run "visibility_below_six_times_is_rejected" {
  command = plan

  variables {
    dispatcher_timeout               = 60
    queue_visibility_timeout_seconds = 359
  }

  expect_failures = [var.queue_visibility_timeout_seconds]
}

run "reserved_concurrency_below_maximum_concurrency_is_rejected" {
  command = plan

  variables {
    dispatcher_maximum_concurrency  = 10
    dispatcher_reserved_concurrency = 5
  }

  expect_failures = [var.dispatcher_reserved_concurrency]
}

run "no_alarms_when_disabled" {
  command = apply

  variables {
    create_queue_alarms = false
  }

  assert {
    condition     = length(output.alarm_names) == 0
    error_message = "create_queue_alarms = false must create no alarm."
  }
}

# The queue module on its own (as another stack would use it) enforces the rule too.
run "queue_module_precondition" {
  command = plan

  module {
    source = "./modules/queue"
  }

  variables {
    name                       = "cma-work"
    kms_key_arn                = "arn:aws:kms:eu-west-1:111122223333:key/data"
    consumer_timeout_seconds   = 60
    visibility_timeout_seconds = 300
  }

  expect_failures = [aws_sqs_queue.this]
}
