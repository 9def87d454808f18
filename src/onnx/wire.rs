//! A pre-scan of the protobuf wire format that counts what decoding would
//! allocate, before prost allocates it.
//!
//! An empty `NodeProto` is two bytes on the wire and a few hundred in memory;
//! gzip shrinks a run of them further, so 39 KB can decode into 20 million
//! structs. Counting the entries first lets the loader refuse a model whose
//! entry count its real size cannot justify.

/// Message types whose fields are walked; every other length-delimited field is
/// a string, bytes or packed scalars and counts as one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    Sparse,
    ValueInfo,
    Type,
    TypeTensor,
    TypeElem,
    TypeMap,
    Shape,
    Function,
    Training,
    /// A message with only scalar and string fields (opset imports, metadata, dims).
    Leaf,
}

/// The message type of field `field` of a `kind`, where it is a message.
fn child(kind: Kind, field: u64) -> Option<Kind> {
    use Kind::*;
    Some(match (kind, field) {
        (Model, 7) => Graph,
        (Model, 25) => Function,
        (Model, 20) => Training,
        (Model, 8 | 14) => Leaf,
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => Sparse,
        (Graph, 11..=13) => ValueInfo,
        (Graph, 14 | 16) => Leaf,
        (Node, 5) => Attribute,
        (Node, 9) => Leaf,
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => Sparse,
        (Attribute, 14 | 15) => Type,
        (Tensor, 3 | 13 | 16) => Leaf,
        (Sparse, 1 | 2) => Tensor,
        (ValueInfo, 2) => Type,
        (ValueInfo, 4) => Leaf,
        (Type, 1 | 8) => TypeTensor,
        (Type, 4 | 9) => TypeElem,
        (Type, 5) => TypeMap,
        (TypeTensor, 2) => Shape,
        (TypeElem, 1) => Type,
        (TypeMap, 2) => Type,
        (Shape, 1) => Leaf,
        (Function, 7) => Node,
        (Function, 11) => Attribute,
        (Function, 12) => ValueInfo,
        (Function, 9 | 14) => Leaf,
        (Training, 1 | 2) => Graph,
        (Training, 3 | 4) => Leaf,
        _ => return None,
    })
}

/// Nesting deeper than prost's own recursion limit is prost's to refuse.
const MAX_DEPTH: usize = 100;

/// Counts the length-delimited entries (messages, strings, bytes) of a
/// `ModelProto`, stopping as soon as the count passes `stop_after`. Malformed
/// input ends the count early: the decoder reports it with its own message.
pub(crate) fn count_entries(bytes: &[u8], stop_after: u64) -> u64 {
    let mut count = 0;
    scan(bytes, Kind::Model, 0, stop_after, &mut count);
    count
}

fn scan(mut buf: &[u8], kind: Kind, depth: usize, stop_after: u64, count: &mut u64) {
    if depth > MAX_DEPTH {
        return;
    }
    while !buf.is_empty() && *count <= stop_after {
        let Some(key) = varint(&mut buf) else { return };
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                if varint(&mut buf).is_none() {
                    return;
                }
            }
            1 | 5 => {
                let n = if wire_type == 1 { 8 } else { 4 };
                let Some(rest) = buf.get(n..) else { return };
                buf = rest;
            }
            2 => {
                let Some(len) = varint(&mut buf).and_then(|l| usize::try_from(l).ok()) else { return };
                let Some(body) = buf.get(..len) else { return };
                buf = &buf[len..];
                *count += 1;
                if let Some(sub) = child(kind, field) {
                    if sub != Kind::Leaf {
                        scan(body, sub, depth + 1, stop_after, count);
                    }
                }
            }
            _ => return,
        }
    }
}

/// One varint from the front of `buf` (prost's decoder), advancing it.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    prost::encoding::decode_varint(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::pb;
    use prost::Message;

    #[test]
    fn counts_nested_nodes_attributes_and_names() {
        let node = pb::NodeProto { input: vec!["a".into(), "b".into()], output: vec!["c".into()], op_type: "Add".into(), ..Default::default() };
        let sub = pb::GraphProto { node: vec![node.clone(), node.clone()], ..Default::default() };
        let attr = pb::AttributeProto { name: "then_branch".into(), g: Some(sub), ..Default::default() };
        let outer = pb::NodeProto { op_type: "If".into(), attribute: vec![attr], ..Default::default() };
        let model = pb::ModelProto { graph: Some(pb::GraphProto { node: vec![outer], ..Default::default() }), ..Default::default() };
        let bytes = model.encode_to_vec();
        // graph, If node + op_type, attribute + name + subgraph, 2 × (node + 3 names + op_type)
        assert_eq!(count_entries(&bytes, u64::MAX), 1 + 2 + 3 + 2 * 5);
        assert!(count_entries(&bytes, 3) <= 4, "stops soon after the bound");
    }

    #[test]
    fn malformed_input_ends_the_count() {
        assert_eq!(count_entries(&[0x3a, 0xff], u64::MAX), 0);
        assert_eq!(count_entries(&[0xff; 12], u64::MAX), 0);
    }
}
