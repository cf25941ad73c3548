//! Domain XML tables: Nova 1.1 and 1.0, devices, bad input.

use super::*;

fn nova(name: &str, flavor: &str, project: (&str, &str), user: (&str, &str)) -> NovaMetadata {
    NovaMetadata {
        instance_id: String::new(),
        instance_name: name.into(),
        flavor_name: flavor.into(),
        project_id: project.0.into(),
        project_name: project.1.into(),
        user_id: user.0.into(),
        user_name: user.1.into(),
    }
}

const NOVA_11: &str = r#"<domain type='kvm'>
  <name>instance-0000002a</name>
  <metadata>
    <other:thing xmlns:other="http://example.org/other"><other:name>not nova</other:name></other:thing>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>web &amp; db</nova:name>
      <nova:flavor name="m1.large"><nova:vcpus>4</nova:vcpus></nova:flavor>
      <nova:owner>
        <nova:user uuid="u-1">alice</nova:user>
        <nova:project uuid="p-1">genomics</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="img-1"/>
    </nova:instance>
  </metadata>
  <devices>
    <disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hda' bus='ide'/></disk>
    <disk type='network'><target dev='vdb' bus='virtio'/></disk>
    <interface type='bridge'><mac address='fa:16:3e:00:00:01'/><target dev='tap1'/></interface>
    <interface type='user'><mac address='fa:16:3e:00:00:02'/></interface>
    <interface type='bridge'><target dev='tap2'/></interface>
  </devices>
</domain>"#;

#[test]
fn domain_xml_cases() {
    struct Case {
        name: &'static str,
        input: &'static str,
        want: DomainXml,
    }
    let cases = [
        Case {
            name: "nova 1.1, devices filtered",
            input: NOVA_11,
            want: DomainXml {
                nova: Some(nova(
                    "web & db",
                    "m1.large",
                    ("p-1", "genomics"),
                    ("u-1", "alice"),
                )),
                disks: vec!["vda".into(), "vdb".into()],
                interfaces: vec!["tap1".into(), "tap2".into()],
            },
        },
        Case {
            name: "nova 1.0 with another prefix",
            input: r#"<domain><metadata><n:instance xmlns:n="http://openstack.org/xmlns/libvirt/nova/1.0">
                <n:name> old </n:name><n:flavor name="m1.tiny"/>
                <n:owner><n:project uuid="p-2">portal</n:project><n:user uuid="u-2">bob</n:user></n:owner>
                </n:instance></metadata></domain>"#,
            want: DomainXml {
                nova: Some(nova("old", "m1.tiny", ("p-2", "portal"), ("u-2", "bob"))),
                ..DomainXml::default()
            },
        },
        Case {
            name: "an unknown nova version is not nova",
            input: r#"<domain><metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/2.0">
                <nova:name>future</nova:name></nova:instance></metadata></domain>"#,
            want: DomainXml::default(),
        },
        Case {
            name: "no metadata, no devices",
            input: "<domain type='test'><name>plain</name></domain>",
            want: DomainXml::default(),
        },
        Case {
            name: "partial nova metadata leaves the rest empty",
            input: r#"<domain><metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
                <nova:name>half</nova:name></nova:instance></metadata></domain>"#,
            want: DomainXml {
                nova: Some(nova("half", "", ("", ""), ("", ""))),
                ..DomainXml::default()
            },
        },
    ];
    for case in cases {
        let got = parse_domain(case.input).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn bad_xml_is_an_error_not_a_panic() {
    for input in [
        "",
        "<domain>",
        "<nodomain/>",
        "<domain><metadata></domain>",
        "\u{0}",
    ] {
        assert!(parse_domain(input).is_err(), "{input:?} should not parse");
    }
}
