"""AWS resource names: valid for SageMaker, stable, and never shared by two models or images."""

from __future__ import annotations

import re

import botocore.session
import pytest

from infra.aws.naming import (
    TAG_STAGE,
    alarm_name,
    config_name,
    endpoint_filter,
    endpoint_name,
    invoke_url,
    model_name,
    parse_invoke_url,
    scaling_resource_id,
    tag_value,
    tags_to_dict,
    variant_name,
    version_of_variant,
)

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
ENDPOINT_PATTERN = SAGEMAKER.shape_for("EndpointName").metadata["pattern"]
MODEL_PATTERN = SAGEMAKER.shape_for("ModelName").metadata["pattern"]
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/modelyard-penguins:v3"


def valid_sagemaker_name(name: str, pattern: str = ENDPOINT_PATTERN) -> bool:
    return len(name) <= 63 and re.fullmatch(pattern, name) is not None


@pytest.mark.parametrize(
    ("model", "prefix", "expected"),
    [("penguins", "", "penguins"), ("penguins", "modelyard-", "modelyard-penguins")],
)
def test_a_valid_name_is_kept_as_it_is(model: str, prefix: str, expected: str) -> None:
    assert endpoint_name(model, prefix) == expected


@pytest.mark.parametrize(
    "model", ["Penguins", "fraud_detector", "fraud detector", "a" * 200, "", "---", "é-model"]
)
def test_a_changed_name_is_valid_and_ends_in_a_hash_of_the_original(model: str) -> None:
    name = endpoint_name(model, "my_prefix.")
    assert valid_sagemaker_name(name), name
    assert re.search(r"-[0-9a-f]{6}$", name), name


def test_models_that_sanitise_alike_get_different_endpoints() -> None:
    names = {
        endpoint_name(m) for m in ["penguins", "Penguins", "PENGUINS", "penguins_", "pen.guins"]
    }
    assert len(names) == 5
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    assert endpoint_name(long_a) != endpoint_name(long_b)


def test_the_prefix_filter_is_what_every_prefixed_endpoint_contains() -> None:
    for prefix in ["modelyard-", "Team_A/", ""]:
        for model in ["penguins", "Fraud Detector"]:
            assert endpoint_filter(prefix) in endpoint_name(model, prefix)


def test_model_names_are_valid_stable_and_differ_by_version_and_image() -> None:
    endpoint = endpoint_name("a" * 80)
    name = model_name(endpoint, 12, IMAGE)
    assert valid_sagemaker_name(name, MODEL_PATTERN), name
    assert name == model_name(endpoint, 12, IMAGE)
    assert name != model_name(endpoint, 13, IMAGE)
    assert name != model_name(endpoint, 12, IMAGE.replace(":v3", ":v3-rebuilt"))
    assert model_name("penguins", 3, IMAGE).startswith("penguins-v3-")


def test_config_names_fit_with_any_endpoint_name() -> None:
    name = config_name(endpoint_name("b" * 90), "0123456789ab")
    assert valid_sagemaker_name(name) and name.endswith("-0123456789ab")


@pytest.mark.parametrize("version", [1, 3, 42])
def test_a_variant_is_named_after_its_version_and_back(version: int) -> None:
    assert version_of_variant(variant_name(version)) == version


@pytest.mark.parametrize("variant", ["AllTraffic", "v0", "v01", "v", "v3-old", "V3"])
def test_variants_not_named_by_modelyard_have_no_version(variant: str) -> None:
    assert version_of_variant(variant) is None


def test_guard_names_carry_the_endpoint_and_variant() -> None:
    assert scaling_resource_id("penguins", 3) == "endpoint/penguins/variant/v3"
    assert alarm_name("penguins", 3) == "modelyard-penguins-v3-5xx-rate"


def test_the_invoke_url_names_the_variant_in_its_fragment() -> None:
    url = invoke_url("eu-west-1", "penguins", 3)
    assert url == (
        "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/penguins/invocations"
        "#TargetVariant=v3"
    )
    target = parse_invoke_url(url)
    assert target.url == url.split("#")[0]
    assert (target.target_variant, target.shadow_variant) == ("v3", None)


def test_a_shadow_slot_url_says_sagemaker_mirrors_it() -> None:
    target = parse_invoke_url(invoke_url("cn-north-1", "penguins", 2, shadow_slot=True))
    assert target.url.startswith("https://runtime.sagemaker.cn-north-1.amazonaws.com.cn/")
    assert (target.target_variant, target.shadow_variant) == (None, "v2")


def test_tag_values_keep_only_what_sagemaker_accepts() -> None:
    pattern = SAGEMAKER.shape_for("TagValue").metadata["pattern"]
    value = tag_value("penguins#1 <b>" + "x" * 300)
    assert len(value) == 256
    assert value.startswith("penguins_1 _b_")
    java_regex = pytest.importorskip("regex")  # AWS patterns use \p{L}: Python's re cannot
    assert java_regex.fullmatch(pattern, value)
    assert tag_value("penguins_service:abc123") == "penguins_service:abc123"


def test_a_tag_given_twice_keeps_its_last_value() -> None:
    tags = [{"Key": TAG_STAGE, "Value": "shadow"}, {"Key": TAG_STAGE, "Value": "canary"}]
    assert tags_to_dict(tags) == {TAG_STAGE: "canary"}
