#!/usr/bin/env bash
# Build the runtime image and push it as $IMAGE_REPOSITORY_URI:$IMAGE_TAG (the pipeline's build step).
# Tags are immutable in ECR: a re-run of the same commit finds its image already there and reuses it.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${IMAGE_REPOSITORY_URI:?}" "${IMAGE_REPOSITORY_NAME:?}" "${IMAGE_TAG:?}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:?set AWS_REGION}}"

if aws ecr describe-images --repository-name "$IMAGE_REPOSITORY_NAME" --image-ids "imageTag=$IMAGE_TAG" \
    >/dev/null 2>&1; then
  echo "image $IMAGE_REPOSITORY_URI:$IMAGE_TAG is already in ECR; not rebuilding"
  exit 0
fi
docker build --target runtime --pull \
  --label "org.opencontainers.image.revision=$IMAGE_TAG" \
  --tag "$IMAGE_REPOSITORY_URI:$IMAGE_TAG" .
aws ecr get-login-password --region "$region" \
  | docker login --username AWS --password-stdin "${IMAGE_REPOSITORY_URI%%/*}"
docker push "$IMAGE_REPOSITORY_URI:$IMAGE_TAG"
echo "pushed $IMAGE_REPOSITORY_URI:$IMAGE_TAG"
