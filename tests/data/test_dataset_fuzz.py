"""Fuzzing dataset.json: whatever it holds, parsing reports problems; it never raises."""

import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.io import write_image

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 300),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)
meta = st.fixed_dictionaries(
    {},
    optional={
        "channel_names": st.one_of(
            json_values, st.dictionaries(st.sampled_from(["0", "1", "x", "-1"]), st.text(max_size=4), max_size=2)
        ),
        "labels": st.one_of(
            json_values,
            st.dictionaries(
                st.sampled_from(["background", "a", "b"]),
                st.one_of(st.integers(-1, 3), st.lists(st.integers(0, 3), max_size=2), st.text(max_size=2)),
                max_size=3,
            ),
        ),
        "numTraining": json_values,
        "file_ending": st.one_of(json_values, st.sampled_from([".nii.gz", ".nii", ".mha", "nii"])),
        "sites": json_values,
        "dataset": json_values,
        "regions_class_order": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(meta, json_values))
def test_any_dataset_json_is_parsed_or_reported(tmp_path_factory, data: object) -> None:
    root = tmp_path_factory.mktemp("ds") / "Dataset001_Fuzz"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    write_image(root / "imagesTr" / "case_000_0000.nii.gz", np.ones((4, 4, 4), np.float32), np.eye(4))
    write_image(root / "labelsTr" / "case_000.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    (root / "dataset.json").write_text(json.dumps(data))
    dataset, problems = parse_dataset(root)
    assert dataset is not None or any(p.severity == "error" for p in problems)
    for p in problems:
        assert "\n" not in str(p) and Path(p.path).is_relative_to(root)
