//! Shape arithmetic written in float ops, as timm's `pad_same` exports it
//! (NFNet's and EfficientNet-"same" convolutions): Shape → Gather → Cast to
//! float → Div → Ceil → Sub/Mul/Add → Clip → Div → Cast to int64 → Unsqueeze →
//! Concat → Pad. Every value is known statically, so the Pad (and everything
//! after it) must get static dims; and a float Div that does not divide exactly
//! must not be folded as integer division.
use adamp_graph::ir::{from_model, Dim, Graph};
use adamp_graph::onnx::{load_model_bytes, Attr, GraphBuilder, TensorData};

fn scalar(b: &mut GraphBuilder, name: &str, v: f32) {
    b.initializer(name, &[], TensorData::F32(vec![v]));
}

fn int(b: &mut GraphBuilder, name: &str, v: &[i64]) {
    b.initializer(name, &[v.len() as i64], TensorData::I64(v.to_vec()));
}

/// `max((ceil(ih / s) - 1) * s + (k - 1) + 1 - ih, 0)` along axis 2 for `ih = 9`,
/// then the pads `[0, 0, total // 2, 0, 0, 0, total - total // 2, 0]` on x.
fn pad_same(k: f32) -> Graph {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2, 3, 9, 9]);
    b.initializer("axis2", &[], TensorData::I64(vec![2]));
    for (n, v) in [("s", 2.0), ("one", 1.0), ("k_1", k - 1.0), ("zero", 0.0), ("two", 2.0)] {
        scalar(&mut b, n, v);
    }
    int(&mut b, "ax0", &[0]);
    int(&mut b, "z2", &[0, 0]);
    int(&mut b, "z1", &[0]);
    b.node("Shape", &["x"], &["shape"], &[]);
    b.node("Gather", &["shape", "axis2"], &["ih_i"], &[("axis", Attr::Int(0))]);
    b.node("Cast", &["ih_i"], &["ih"], &[("to", Attr::Int(1))]);
    b.node("Div", &["ih", "s"], &["q"], &[]);
    b.node("Ceil", &["q"], &["c"], &[]);
    b.node("Sub", &["c", "one"], &["c1"], &[]);
    b.node("Mul", &["c1", "s"], &["m"], &[]);
    b.node("Add", &["m", "k_1"], &["a"], &[]);
    b.node("Add", &["a", "one"], &["a1"], &[]);
    b.node("Sub", &["a1", "ih"], &["raw"], &[]);
    b.node("Clip", &["raw", "zero"], &["total"], &[]);
    b.node("Div", &["total", "two"], &["half"], &[]);
    b.node("Cast", &["half"], &["left"], &[("to", Attr::Int(7))]);
    b.node("Cast", &["total"], &["total_i"], &[("to", Attr::Int(7))]);
    b.node("Sub", &["total_i", "left"], &["right"], &[]);
    b.node("Unsqueeze", &["left", "ax0"], &["l1"], &[]);
    b.node("Unsqueeze", &["right", "ax0"], &["r1"], &[]);
    b.node("Concat", &["z2", "l1", "z1", "z2", "r1", "z1"], &["pads"], &[("axis", Attr::Int(0))]);
    b.node("Pad", &["x", "pads"], &["y"], &[]);
    b.output("y");
    from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds")
}

fn value<'g>(g: &'g Graph, name: &str) -> &'g adamp_graph::ir::Value {
    &g.values[g.value_by_name(name).expect("value")]
}

fn known(v: &[i64]) -> Vec<Dim> {
    v.iter().map(|&d| Dim::Known(d)).collect()
}

#[test]
fn pad_same_amounts_fold_to_static_dims() {
    // k = 3: total (5 - 1) * 2 + 3 - 9 = 2, split 1 + 1.
    let g = pad_same(3.0);
    assert_eq!(value(&g, "pads").ints, Some(known(&[0, 0, 1, 0, 0, 0, 1, 0])));
    assert_eq!(value(&g, "y").shape, Some(known(&[2, 3, 11, 9])));
}

#[test]
fn an_inexact_float_div_truncates_only_when_cast_to_int() {
    // k = 4: total 3; 3 / 2 = 1.5 in float, cast to int64 -> 1; the right pad 3 - 1 = 2.
    let g = pad_same(4.0);
    assert_eq!(value(&g, "half").scalar, Some(1.5));
    assert_ne!(value(&g, "half").ints, Some(known(&[1])), "1.5 is no integer");
    assert_eq!(value(&g, "left").ints, Some(known(&[1])));
    assert_eq!(value(&g, "pads").ints, Some(known(&[0, 0, 1, 0, 0, 0, 2, 0])));
    assert_eq!(value(&g, "y").shape, Some(known(&[2, 3, 12, 9])));
}

#[test]
fn ceil_of_an_inexact_quotient_of_shape_ints_rounds_up() {
    // ih = 9 from Shape (ints, no scalar): 9 / 2 = 4.5 must not fold to 4, and Ceil gives 5.
    let g = pad_same(3.0);
    assert_ne!(value(&g, "q").ints, Some(known(&[4])), "a float Div is not integer division");
    assert_eq!(value(&g, "q").scalar, Some(4.5));
    assert_eq!(value(&g, "c").ints, Some(known(&[5])));
}
