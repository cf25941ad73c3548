//! Domain XML -> what the libvirt source keeps per domain: Nova's `<nova:instance>` metadata
//! and the target names of the disks and NICs.
//!
//! Pure: no I/O, parsed with `roxmltree` (a real XML parser, so namespaces, entities and
//! attribute order are handled as XML defines them, not by string matching). Both Nova
//! namespace versions, 1.1 and 1.0, are accepted; a domain without Nova metadata is not an
//! error, only a guest without `libvirt_domain_openstack_info`.

use crate::snapshot::NovaMetadata;

/// The namespaces Nova has written `<nova:instance>` in, newest first.
pub const NOVA_NAMESPACES: [&str; 2] = [
    "http://openstack.org/xmlns/libvirt/nova/1.1",
    "http://openstack.org/xmlns/libvirt/nova/1.0",
];

/// What the source takes from one domain's XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainXml {
    pub nova: Option<NovaMetadata>,
    /// `<disk device="disk"><target dev=...>` in document order (CD-ROMs and floppies left out).
    pub disks: Vec<String>,
    /// `<interface><target dev=...>` in document order; NICs without a target are left out.
    pub interfaces: Vec<String>,
}

/// A domain XML that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("domain XML does not parse: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("domain XML has root element <{0}>, expected <domain>")]
    NotADomain(String),
}

/// Parses a full domain XML (`virDomainGetXMLDesc`).
pub fn parse_domain(xml: &str) -> Result<DomainXml, MetadataError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if !root.has_tag_name("domain") {
        return Err(MetadataError::NotADomain(
            root.tag_name().name().to_string(),
        ));
    }
    let nova = root
        .children()
        .find(|n| n.has_tag_name("metadata"))
        .and_then(|m| m.children().find_map(nova_instance));
    let devices = root.children().find(|n| n.has_tag_name("devices"));
    let targets = |tag: &str, keep: fn(roxmltree::Node) -> bool| -> Vec<String> {
        devices
            .iter()
            .flat_map(|d| d.children())
            .filter(|n| n.has_tag_name(tag) && keep(*n))
            .filter_map(|n| n.children().find(|c| c.has_tag_name("target")))
            .filter_map(|t| t.attribute("dev"))
            .filter(|dev| !dev.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(DomainXml {
        nova,
        disks: targets("disk", |n| {
            n.attribute("device").unwrap_or("disk") == "disk"
        }),
        interfaces: targets("interface", |_| true),
    })
}

/// The first child element `ns:name` of `parent`.
fn child<'a, 'i>(
    parent: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    parent.children().find(|c| c.has_tag_name((ns, name)))
}

/// Reads one `<nova:instance>` element; `None` when `node` is anything else.
fn nova_instance(node: roxmltree::Node) -> Option<NovaMetadata> {
    let ns = NOVA_NAMESPACES
        .into_iter()
        .find(|ns| node.has_tag_name((*ns, "instance")))?;
    let child = |parent, name| child(parent, ns, name);
    let text = |n: Option<roxmltree::Node>| {
        n.and_then(|n| n.text())
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    let attr = |n: Option<roxmltree::Node>, a: &str| {
        n.and_then(|n| n.attribute(a))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let owner = child(node, "owner");
    let user = owner.and_then(|o| child(o, "user"));
    let project = owner.and_then(|o| child(o, "project"));
    Some(NovaMetadata {
        // Nova names the domain after the instance; the instance UUID is the domain UUID and
        // is filled in by the caller, which knows it.
        instance_id: String::new(),
        instance_name: text(child(node, "name")),
        flavor_name: attr(child(node, "flavor"), "name"),
        project_id: attr(project, "uuid"),
        project_name: text(project),
        user_id: attr(user, "uuid"),
        user_name: text(user),
    })
}

#[cfg(test)]
mod tests;
