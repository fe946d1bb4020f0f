#!/usr/bin/env bash
# The pipeline's image, in two steps so that nothing is pushed before the suite passed inside it:
#   build-image.sh build   docker build --target runtime, tagged $IMAGE_REPOSITORY_URI:$IMAGE_TAG (or
#                          aiproxy:$IMAGE_TAG without a repository, as pull requests build it). Always builds:
#                          an image already in ECR under this tag is never a reason to skip the build.
#   build-image.sh push    push that image to ECR (the pipeline's build project only).
#
# IMAGE_TAG is the full 40-hex commit id (the app stack's ImageTag accepts nothing else). Tags are immutable
# in ECR, and the repository policy (cicd/1-setup, OnlyThePipelineBuildPushes) lets only the pipeline's
# build role push, so a <commit> tag that is already there was pushed by an earlier run of this pipeline
# for the same commit, after the same tests: a re-run (say, after the pipeline stack was updated) keeps
# that image, since the tag cannot move, and says so. The script checks that the repository policy is in
# place before it accepts an existing tag; without it, an existing tag fails the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
step="${1:?usage: build-image.sh build|push}"
: "${IMAGE_TAG:?set IMAGE_TAG to the commit id}"
if ! [[ "$IMAGE_TAG" =~ ^[0-9a-f]{40}$ ]]; then
  echo "build-image.sh: IMAGE_TAG must be a full 40-hex commit id, got '$IMAGE_TAG'" >&2
  exit 2
fi
image="${IMAGE_REPOSITORY_URI:-aiproxy}:$IMAGE_TAG"
policy_statement="OnlyThePipelineBuildPushes"

case "$step" in
  build)
    docker build --target runtime --pull \
      --label "org.opencontainers.image.revision=$IMAGE_TAG" \
      --tag "$image" .
    echo "built $image"
    ;;
  push)
    : "${IMAGE_REPOSITORY_URI:?}" "${IMAGE_REPOSITORY_NAME:?}"
    region="${AWS_REGION:-${AWS_DEFAULT_REGION:?set AWS_REGION}}"
    docker image inspect "$image" >/dev/null  # built (and tested) in this run, by `build-image.sh build`
    err="$(mktemp)"
    if existing="$(aws ecr describe-images --repository-name "$IMAGE_REPOSITORY_NAME" \
        --image-ids "imageTag=$IMAGE_TAG" --query 'imageDetails[0].imageDigest' --output text 2>"$err")"; then
      policy="$(aws ecr get-repository-policy --repository-name "$IMAGE_REPOSITORY_NAME" \
        --query policyText --output text 2>/dev/null || true)"
      if [[ "$policy" != *"\"$policy_statement\""* ]]; then
        echo "build-image.sh: $image already exists, and the repository does not restrict pushes to the" \
             "pipeline (no $policy_statement statement): refusing to deploy an image this run did not push." >&2
        exit 1
      fi
      echo "$image already exists ($existing), pushed by an earlier pipeline run of this commit; tags are" \
           "immutable, so that image stays. This run rebuilt and tested the commit but does not push it."
      exit 0
    elif ! grep -q ImageNotFoundException "$err"; then
      echo "build-image.sh: cannot tell whether $image exists: $(head -c 300 "$err")" >&2
      exit 1
    fi
    aws ecr get-login-password --region "$region" \
      | docker login --username AWS --password-stdin "${IMAGE_REPOSITORY_URI%%/*}"
    docker push "$image"
    echo "pushed $image"
    ;;
  *)
    echo "usage: build-image.sh build|push" >&2
    exit 2
    ;;
esac
