//! No op panics: every registered op, with inputs
//! of every rank 0–5, every arity from 0 to one past the largest, and hostile
//! attributes (out of range, extreme, of the wrong type), through shape
//! inference, the analysis and the gradient rewrite. Errors are fine; a panic
//! fails the test with the cases that panicked.
use adamp_graph::onnx::{load_model_bytes, Attr, GraphBuilder, TensorData};
use adamp_graph::rewrite::{self, Loss, Options};
use adamp_graph::optim::{Algorithm, Config, Detect};

/// One past the most inputs any standard op takes (LSTM, Attention: 8).
const MAX_ARITY: usize = 9;

/// Every op is swept up to this arity; only [`LONG_OPS`] beyond (the sweep's time).
const COMMON_ARITY: usize = 5;

/// Ops that take more than four inputs.
const LONG_OPS: &[&str] = &[
    "BatchNormalization", "LSTM", "GRU", "RNN", "Attention", "QLinearConv", "QLinearMatMul", "DeformConv", "Resize", "Slice",
    "RoiAlign", "ConvInteger", "MatMulInteger", "Adam", "Adagrad", "Momentum", "Pad", "LayerNormalization", "GroupNormalization",
    "Clip", "Sum", "Mean", "Max", "Min", "Concat",
];

/// Every registered op (built in the default domain).
fn ops() -> Vec<&'static str> {
    let mut ops: Vec<&str> = adamp_graph::ops::all().map(|d| d.name).collect();
    ops.sort_unstable();
    ops.dedup();
    ops
}

fn attr_sets() -> Vec<Vec<(&'static str, Attr)>> {
    let big = i64::MAX;
    let ints = |v: &[i64]| Attr::Ints(v.to_vec());
    vec![
        vec![],
        vec![
            ("axis", Attr::Int(7)),
            ("axes", ints(&[-9, 40])),
            ("perm", ints(&[5, 5])),
            ("kernel_shape", ints(&[0, -1])),
            ("strides", ints(&[0])),
            ("pads", ints(&[-3])),
            ("dilations", ints(&[-1, 0])),
            ("group", Attr::Int(0)),
            ("output_shape", ints(&[-5, 2])),
            ("output_padding", ints(&[9, 9, 9])),
            ("blocksize", Attr::Int(0)),
            ("k", Attr::Int(-1)),
            ("sample_size", Attr::Int(-1)),
            ("shape", ints(&[-2, 3])),
            ("hidden_size", Attr::Int(-1)),
            ("num_outputs", Attr::Int(0)),
            ("batch_dims", Attr::Int(-4)),
            ("to", Attr::Int(-1)),
            ("start", Attr::Int(-99)),
            ("end", Attr::Int(99)),
        ],
        vec![
            ("axis", Attr::Int(i64::MIN)),
            ("axes", ints(&[big, i64::MIN])),
            ("kernel_shape", ints(&[big, big])),
            ("strides", ints(&[big, big])),
            ("pads", ints(&[i64::MIN, big, i64::MIN, big])),
            ("dilations", ints(&[big, big])),
            ("group", Attr::Int(big)),
            ("blocksize", Attr::Int(big)),
            ("num_outputs", Attr::Int(big)),
            ("batch_dims", Attr::Int(big)),
            ("output_height", Attr::Int(big)),
            ("output_shape", ints(&[big, big])),
            ("sample_size", Attr::Int(big)),
            ("shape", ints(&[big, big])),
            ("k", Attr::Int(big)),
            ("ceil_mode", Attr::Int(1)),
            ("auto_pad", Attr::Str("SAME_UPPER".into())),
            ("start", Attr::Int(i64::MIN)),
            ("end", Attr::Int(big)),
        ],
        vec![
            ("axis", Attr::Str("one".into())),
            ("axes", Attr::Float(1.5)),
            ("kernel_shape", Attr::Int(3)),
            ("perm", Attr::Str("x".into())),
            ("equation", Attr::Str("a...b...,->...c".into())),
            ("mode", Attr::Str("cubic".into())),
            ("direction", Attr::Str("bidirectional".into())),
            ("layout", Attr::Int(1)),
            ("reduction", Attr::Str("none".into())),
            ("keep_aspect_ratio_policy", Attr::Str("not_larger".into())),
            ("training_mode", Attr::Int(1)),
            ("onesided", Attr::Int(1)),
            ("inverse", Attr::Int(1)),
            ("value", Attr::Tensor(vec![0], TensorData::F32(vec![]))),
            ("transA", Attr::Int(1)),
            ("transB", Attr::Int(1)),
        ],
    ]
}

/// Every attribute `op` declares, each set to a valid value of its type (a
/// flag on, a string its last allowed value, a count 1 or its minimum), so
/// every rule also runs with all its attributes present and past the IR
/// builder's checks; a rule that reads an attribute its op does not declare
/// fails the sweep (`ops::undeclared_reads`).
fn declared_set(op: &str) -> Vec<(&'static str, Attr)> {
    use adamp_graph::ops::{AttrCheck, AttrDefault, AttrKind};
    let Some(d) = adamp_graph::ops::lookup("", op) else { return Vec::new() };
    let mut set = Vec::new();
    for a in d.attrs {
        let int = match (a.check, a.default) {
            (AttrCheck::AtLeast(k), _) => k.max(1),
            (_, AttrDefault::Int(i)) if i != 0 && a.check != AttrCheck::Flag => i,
            _ => 1,
        };
        let value = match a.kind {
            AttrKind::Int => Attr::Int(int),
            AttrKind::Float => Attr::Float(match a.default {
                AttrDefault::Float(f) => f,
                _ => 0.5,
            }),
            AttrKind::Ints => Attr::Ints(vec![int; 2]),
            AttrKind::Str => Attr::Str(match (a.check, a.default) {
                (AttrCheck::OneOf(allowed), _) => allowed.last().copied().unwrap_or_default().to_string(),
                (_, AttrDefault::Str(s)) => s.to_string(),
                _ => "ij,jk->ik".to_string(),
            }),
            AttrKind::Tensor => Attr::Tensor(vec![1], TensorData::F32(vec![0.5])),
            // FLOATS, STRINGS and GRAPH: left absent
            _ => continue,
        };
        set.push((a.name, value));
    }
    set
}

/// `op` reading `x * W` (a changed value for the analysis) and, after it,
/// alternately the weight and an integer tensor (hostile values when `hostile`).
fn model(op: &str, rank: usize, arity: usize, attrs: &[(&str, Attr)], hostile: bool) -> Vec<u8> {
    let dims = vec![2i64; rank];
    let mut b = GraphBuilder::new("sweep", 18);
    b.input("x", &dims);
    b.initializer("W", &dims, TensorData::F32(vec![0.5; 1 << rank]));
    let ints = if hostile { vec![i64::MIN, -1, i64::MAX, 0, 3] } else { vec![1; rank.max(1)] };
    let n = ints.len() as i64;
    b.initializer("k", &[n], TensorData::I64(ints));
    b.node("Mul", &["x", "W"], &["h"], &[]);
    let inputs: Vec<&str> = (0..arity).map(|j| if j == 0 { "h" } else if j % 2 == 1 { "W" } else { "k" }).collect();
    b.node(op, &inputs, &["y", "y1", "y2"], attrs);
    b.output("y");
    b.to_bytes()
}

fn opts() -> Options {
    Options { loss: Loss::Mse, config: Config::defaults(Algorithm::Adamp), detect: Detect::Static, plan: None, gradients: true }
}

#[test]
fn no_op_panics_on_any_rank_arity_or_attribute() {
    let ops = ops();
    assert!(ops.len() > 150, "only {} ops swept", ops.len());
    let shared = attr_sets();
    let mut panics = Vec::new();
    let mut cases = 0;
    for op in &ops {
        let mut sets = shared.clone();
        sets.push(declared_set(op));
        for rank in 0..=5 {
            let top = if LONG_OPS.contains(op) { MAX_ARITY } else { COMMON_ARITY };
            for arity in 0..=top {
                for (k, attrs) in sets.iter().enumerate() {
                    for hostile in [false, true] {
                        // integer inputs sit at slot 2 and beyond
                        if hostile && (arity < 3 || k > 1) {
                            continue;
                        }
                        cases += 1;
                        let bytes = model(op, rank, arity, attrs, hostile);
                        let r = std::panic::catch_unwind(|| {
                            let model = load_model_bytes(bytes).expect("the sweep's models decode");
                            if let Ok(g) = adamp_graph::ir::from_model(&model) {
                                let _ = adamp_graph::analysis::analyze(&g);
                            }
                            let _ = rewrite::rewrite(&model, &opts()).map(|s| s.encode().map(|_| ()));
                        });
                        if r.is_err() {
                            panics.push(format!("{op} rank {rank} arity {arity} attribute set {k}{}", if hostile { " hostile ints" } else { "" }));
                        }
                    }
                }
            }
        }
    }
    assert!(panics.is_empty(), "{} of {cases} cases panicked, e.g.:\n  {}", panics.len(), panics.iter().take(30).cloned().collect::<Vec<_>>().join("\n  "));
    let undeclared = adamp_graph::ops::undeclared_reads();
    assert!(undeclared.is_empty(), "rules read attributes their ops do not declare (declare them, or read them with `get_if_declared`): {undeclared:?}");
}
