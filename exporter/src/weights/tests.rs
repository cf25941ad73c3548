#![allow(clippy::unwrap_used)]

use super::*;

/// Two sets like the original's example file, listed newest first as it does.
const JSON: &str = r#"[
  {"resource_set_timestamp": 2000, "vcpus": [{"value": 4, "weight": 2}, {"value": 2, "weight": 1}],
   "memory_mb": [{"value": 8, "weight": 2}]},
  {"resource_set_timestamp": 1000, "vcpus": [{"value": 2, "weight": 2}, {"value": 4, "weight": 3}],
   "memory_mb": [{"value": 8, "weight": 3}, {"value": 16, "weight": 5}]}
]"#;

#[test]
fn weight_selection() {
    struct Case {
        name: &'static str,
        resource: Resource,
        amount: f64,
        started_at: f64,
        want: f64,
    }
    let w = Weights::from_json(JSON.as_bytes()).unwrap();
    let cases = [
        Case {
            name: "before the first set: the oldest set",
            resource: Resource::Vcpus,
            amount: 2.0,
            started_at: 10.0,
            want: 2.0,
        },
        Case {
            name: "exactly at the first set",
            resource: Resource::Vcpus,
            amount: 2.0,
            started_at: 1000.0,
            want: 2.0,
        },
        Case {
            name: "between sets: the older one",
            resource: Resource::Vcpus,
            amount: 4.0,
            started_at: 1999.9,
            want: 3.0,
        },
        Case {
            name: "exactly at the newer set",
            resource: Resource::Vcpus,
            amount: 4.0,
            started_at: 2000.0,
            want: 2.0,
        },
        Case {
            name: "after the newest set",
            resource: Resource::Vcpus,
            amount: 1.0,
            started_at: 9e9,
            want: 1.0,
        },
        Case {
            name: "amount between values: the next larger value",
            resource: Resource::Vcpus,
            amount: 3.0,
            started_at: 2500.0,
            want: 2.0,
        },
        Case {
            name: "amount equal to a value",
            resource: Resource::Vcpus,
            amount: 2.0,
            started_at: 2500.0,
            want: 1.0,
        },
        Case {
            name: "amount above every value: the largest value",
            resource: Resource::Vcpus,
            amount: 64.0,
            started_at: 2500.0,
            want: 2.0,
        },
        Case {
            name: "memory in its own list",
            resource: Resource::Memory,
            amount: 12.0,
            started_at: 1500.0,
            want: 5.0,
        },
        Case {
            name: "memory above every value",
            resource: Resource::Memory,
            amount: 999.0,
            started_at: 2500.0,
            want: 2.0,
        },
    ];
    for case in cases {
        assert_eq!(
            w.weight(case.resource, case.amount, case.started_at),
            case.want,
            "case: {}",
            case.name
        );
    }
}

#[test]
fn missing_weights_mean_one() {
    assert_eq!(Weights::default().weight(Resource::Vcpus, 8.0, 0.0), 1.0);
    let empty_lists =
        Weights::from_json(br#"[{"resource_set_timestamp": 5, "vcpus": [], "memory_mb": []}]"#)
            .unwrap();
    assert_eq!(empty_lists.weight(Resource::Vcpus, 8.0, 100.0), 1.0);
    assert_eq!(empty_lists.weight(Resource::Memory, 8.0, 0.0), 1.0);
    let no_memory = Weights::from_json(
        br#"[{"resource_set_timestamp": 5, "vcpus": [{"value": 1, "weight": 4}]}]"#,
    )
    .unwrap();
    assert_eq!(no_memory.weight(Resource::Memory, 8.0, 100.0), 1.0);
    assert_eq!(no_memory.weight(Resource::Vcpus, 8.0, 100.0), 4.0);
}

#[test]
fn later_duplicates_replace_earlier_ones() {
    let w = Weights::from_json(br#"[
        {"resource_set_timestamp": 5, "vcpus": [{"value": 1, "weight": 4}, {"value": 1, "weight": 7}]},
        {"resource_set_timestamp": 5, "vcpus": [{"value": 1, "weight": 9}, {"value": 1, "weight": 8}]}
    ]"#).unwrap();
    assert_eq!(w.sets().len(), 1);
    assert_eq!(w.weight(Resource::Vcpus, 1.0, 10.0), 8.0);
}

#[test]
fn the_three_encodings_agree() {
    let json = Weights::from_json(JSON.as_bytes()).unwrap();
    let yaml_list = Weights::from_yaml(JSON).unwrap();
    let yaml_map = Weights::from_yaml(
        "weights:\n  - resource_set_timestamp: 2000\n    vcpus: [{value: 4, weight: 2}, {value: 2, weight: 1}]\n    memory_mb: [{value: 8, weight: 2}]\n  - resource_set_timestamp: 1000\n    vcpus: [{value: 2, weight: 2}, {value: 4, weight: 3}]\n    memory_mb: [{value: 8, weight: 3}, {value: 16, weight: 5}]\n",
    )
    .unwrap();
    let toml = Weights::from_toml(
        "[[weights]]\nresource_set_timestamp = 2000 # newest first, as the original's file\nvcpus = [{value = 4, weight = 2}, {value = 2, weight = 1}]\nmemory_mb = [{value = 8, weight = 2}]\n\n[[weights]]\nresource_set_timestamp = 1000\nvcpus = [{value = 2, weight = 2}, {value = 4, weight = 3.0}]\nmemory_mb = [{value = 8, weight = 3}, {value = 16, weight = 5}]\n",
    )
    .unwrap();
    assert_eq!(json, yaml_list);
    assert_eq!(json, yaml_map);
    assert_eq!(json, toml);
    assert_eq!(json.sets()[0].since, 1000);
    assert_eq!(json.sets()[1].vcpus[0].value, 2.0, "sorted by value");
}

#[test]
fn bad_input_names_the_problem() {
    let cases: [(&str, Result<Weights, WeightsError>, &str); 4] = [
        (
            "not a list",
            Weights::from_json(b"{}"),
            "invalid weights JSON",
        ),
        (
            "missing timestamp",
            Weights::from_json(br#"[{"vcpus": []}]"#),
            "resource_set_timestamp",
        ),
        (
            "step without a weight",
            Weights::from_json(br#"[{"resource_set_timestamp": 1, "vcpus": [{"value": 1}]}]"#),
            "missing field `weight`",
        ),
        (
            "bad TOML",
            Weights::from_toml("[[weights]]\nresource_set_timestamp = \"soon\"\n"),
            "invalid weights TOML",
        ),
    ];
    for (name, got, want) in cases {
        let err = got.unwrap_err().to_string();
        assert!(err.contains(want), "case {name}: {err:?} lacks {want:?}");
    }
}

#[test]
fn zeros_of_both_signs_are_the_same_value() {
    // Found by tests/properties.rs: `-0.0` sorted before `0.0` whatever the file order, so
    // the earlier of the two equal values won.
    struct Case {
        name: &'static str,
        json: &'static str,
        want: f64,
    }
    let cases = [
        Case {
            name: "0 then -0: the later wins",
            json: r#"[{"resource_set_timestamp": 0, "vcpus": [{"value": 0.0, "weight": 5}, {"value": -0.0, "weight": 7}]}]"#,
            want: 7.0,
        },
        Case {
            name: "-0 then 0: the later wins",
            json: r#"[{"resource_set_timestamp": 0, "vcpus": [{"value": -0.0, "weight": 5}, {"value": 0.0, "weight": 7}]}]"#,
            want: 7.0,
        },
    ];
    for c in cases {
        let w = Weights::from_json(c.json.as_bytes()).unwrap();
        assert_eq!(w.weight(Resource::Vcpus, 0.0, 0.0), c.want, "{}", c.name);
    }
}
