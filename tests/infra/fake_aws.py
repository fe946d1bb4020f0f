"""A stand-in for the AWS CLI (``aws``) for the pipeline scripts' tests, when the real CLI is not installed.

* ``aws secretsmanager describe-secret --secret-id ID [--output json]`` is a real call (botocore) to
  ``AWS_ENDPOINT_URL`` (moto in server mode in the tests), printed and failed the way AWS CLI v2 does:
  the response as JSON on stdout, or ``An error occurred (<Code>) when calling the DescribeSecret
  operation: <message>`` on stderr with exit status 254 (255 when the endpoint cannot be reached).
* ``aws ecr ...`` answers from ``FAKE_ECR_IMAGE_DIGEST`` (the tag exists with that digest; unset: it does
  not) and ``FAKE_ECR_POLICY`` (the repository policy text; unset: none).
Every call is appended to ``FAKE_AWS_LOG`` when set.
"""

from __future__ import annotations

import json
import os
import sys


def _fail(code: str, operation: str, message: str) -> None:
    print(f"\nAn error occurred ({code}) when calling the {operation} operation: {message}", file=sys.stderr)
    sys.exit(254)


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def secretsmanager(args: list[str]) -> None:
    import botocore.session
    from botocore.exceptions import ClientError, EndpointConnectionError

    assert args[0] == "describe-secret", args
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        response = client.describe_secret(SecretId=_option(args, "--secret-id"))
    except ClientError as exc:
        error = exc.response["Error"]
        _fail(error["Code"], "DescribeSecret", error.get("Message", ""))
    except EndpointConnectionError as exc:
        print(f"\nCould not connect to the endpoint URL: {exc.kwargs.get('endpoint_url')}", file=sys.stderr)
        sys.exit(255)
    response.pop("ResponseMetadata", None)
    print(json.dumps(response, default=str, indent=2))


def ecr(args: list[str]) -> None:
    if args[0] == "describe-images":
        digest = os.environ.get("FAKE_ECR_IMAGE_DIGEST")
        if not digest:
            _fail("ImageNotFoundException", "DescribeImages", "The image with imageId ... does not exist")
        print(digest)
    elif args[0] == "get-repository-policy":
        policy = os.environ.get("FAKE_ECR_POLICY")
        if not policy:
            _fail("RepositoryPolicyNotFoundException", "GetRepositoryPolicy", "no policy")
        print(policy)
    elif args[0] == "get-login-password":
        print("fake-password")
    else:
        _fail("InvalidAction", args[0], "not faked")


def main(argv: list[str]) -> None:
    if os.environ.get("FAKE_AWS_LOG"):
        with open(os.environ["FAKE_AWS_LOG"], "a") as log:
            log.write(" ".join(["aws", *argv]) + "\n")
    service, args = argv[0], argv[1:]
    {"secretsmanager": secretsmanager, "ecr": ecr}[service](args)


if __name__ == "__main__":
    main(sys.argv[1:])
