//! Shape inference and constant propagation of small integer tensors.
//!
//! Only what the analysis needs: ranks and dims through the ops that carry
//! activations, and the values of shape arithmetic (`Shape` → `Gather` →
//! `Concat` → `Reshape`), symbolic dims included. Declared shapes
//! (value_info) fill what inference cannot know.
use super::{DType, Dim, Graph, Node};

/// Largest integer tensor whose elements are tracked.
pub(crate) const MAX_TRACKED_INTS: usize = 64;

/// An exporter's declaration for a value: element type and shape (value_info).
pub(crate) type Declared = (Option<DType>, Option<Vec<Dim>>);

/// Rounds of forward inference; constraints from consumers are gathered between them.
const INFERENCE_ROUNDS: usize = 3;

/// Fills shapes, `ints`, `scalar` and `is_const` for every value, in node order.
///
/// Forward rules come first; where they cannot fix a rank, the op definitions of
/// the consumers can (a Conv's input has its weight's rank), and a further
/// forward round carries that on. Declared shapes (`declared`, from value_info)
/// fill only what neither knows; a declaration that contradicts the inferred
/// shape is recorded in [`Graph::shape_conflicts`] and the inferred one is used.
pub(crate) fn infer(g: &mut Graph, declared: &[Option<Declared>]) {
    for init in &g.initializers {
        let v = &mut g.values[init.value];
        v.is_const = true;
        v.ints = init.tensor.as_ints().map(|xs| xs.into_iter().map(Dim::Known).collect());
        v.scalar = init.tensor.as_scalar();
    }
    for round in 0..INFERENCE_ROUNDS {
        let conflicts = forward(g, declared);
        let last = round + 1 == INFERENCE_ROUNDS;
        if last || !backward(g) {
            g.shape_conflicts = conflicts;
            break;
        }
    }
}

/// The exporter's declarations of a graph's values (value_info, then the graph
/// outputs; the first declaration counts), which [`infer`] checks against what
/// it infers, so they are kept apart from the values' own shapes.
pub(crate) fn declarations(g: &Graph) -> Vec<Option<Declared>> {
    let mut declared: Vec<Option<Declared>> = vec![None; g.values.len()];
    let outputs = g.outputs.iter().zip(&g.output_decls).filter_map(|(&v, d)| d.as_ref().map(|d| (v, d)));
    for (v, d) in g.value_info.iter().map(|(v, d)| (*v, d)).chain(outputs) {
        if declared[v].is_none() {
            declared[v] = Some((d.dtype, d.shape.clone()));
        }
    }
    declared
}

/// How deep [`infer_body`] re-runs inference in nested subgraphs; deeper bodies
/// keep the facts their own build inferred (each level multiplies the work).
const MAX_BODY_DEPTH: usize = 3;

thread_local! {
    static BODY_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The facts of a subgraph's outputs when its inputs are `inputs` and the values
/// it captures are as `outer` knows them: inference runs again on a copy.
pub(crate) fn infer_body(outer: &Graph, body: &Graph, inputs: &[crate::ops::ShapeOut]) -> Vec<crate::ops::ShapeOut> {
    let facts = |g: &Graph| g.outputs.iter().map(|&o| {
        let v = &g.values[o];
        (v.shape.clone(), v.ints.clone(), v.scalar, v.dtype)
    }).collect::<Vec<_>>();
    let depth = BODY_DEPTH.with(|d| d.get());
    if depth >= MAX_BODY_DEPTH {
        return facts(body);
    }
    let mut g = body.clone();
    for &c in &body.captures {
        let Some(o) = outer.value_by_name(&body.values[c].name) else { continue };
        let (src, v) = (&outer.values[o], &mut g.values[c]);
        v.shape = src.shape.clone();
        v.dtype = src.dtype;
        v.ints = src.ints.clone();
        v.scalar = src.scalar;
        v.is_const = src.is_const;
    }
    for (&i, (shape, ints, scalar, dtype)) in body.inputs.iter().zip(inputs) {
        let v = &mut g.values[i];
        v.shape = refine(shape.clone(), v.shape.take());
        v.dtype = dtype.or(v.dtype);
        v.ints = ints.clone();
        v.scalar = *scalar;
    }
    let declared = declarations(&g);
    BODY_DEPTH.with(|d| d.set(depth + 1));
    infer(&mut g, &declared);
    BODY_DEPTH.with(|d| d.set(depth));
    facts(&g)
}

/// One forward pass over the nodes; returns the declarations that disagreed.
fn forward(g: &mut Graph, declared: &[Option<Declared>]) -> Vec<super::ShapeConflict> {
    let mut conflicts = Vec::new();
    for id in 0..g.nodes.len() {
        let node = &g.nodes[id];
        let is_const = node.inputs.iter().flatten().all(|&v| g.values[v].is_const)
            && node.implicit_inputs.is_empty()
            && !node.def.is_some_and(|d| d.random);
        let inferred = infer_node(g, node);
        for (k, out) in node.outputs.clone().iter().enumerate() {
            let Some(out) = *out else { continue };
            let (shape, ints, scalar, dtype) = inferred.get(k).cloned().unwrap_or_default();
            let (decl_dtype, decl_shape) = declared.get(out).cloned().flatten().unwrap_or_default();
            let known = refine(shape, g.values[out].shape.take());
            let (shape, conflict) = reconcile(known.clone(), decl_shape.clone());
            if conflict {
                conflicts.push(super::ShapeConflict {
                    value: out,
                    declared: g.dims_string(decl_shape.as_deref()),
                    inferred: g.dims_string(known.as_deref()),
                });
            }
            // A one-element value with an integral scalar is also shape ints: float
            // shape arithmetic (timm's pad_same) meets integer shapes in a Concat.
            let one_element = shape.as_ref().is_some_and(|s| s.iter().all(|d| *d == Dim::Known(1)));
            let ints = match (ints, scalar) {
                (None | Some(_), Some(x)) if one_element && x.fract() == 0.0 && x.abs() < 9.0e15 => Some(vec![Dim::Known(x as i64)]),
                (ints, _) => ints,
            };
            let v = &mut g.values[out];
            v.is_const = is_const;
            v.shape = shape;
            v.dtype = dtype.or(v.dtype).or(decl_dtype);
            v.ints = ints;
            v.scalar = scalar;
        }
    }
    conflicts
}

/// Combines two derivations of one shape: known dims from either, `first` on conflict.
pub(crate) fn refine(first: Option<Vec<Dim>>, second: Option<Vec<Dim>>) -> Option<Vec<Dim>> {
    match (first, second) {
        (Some(a), Some(b)) if a.len() == b.len() => Some(
            a.iter()
                .zip(&b)
                .map(|(x, y)| match (x, y) {
                    (Dim::Known(_), _) => *x,
                    (_, Dim::Known(_)) => *y,
                    (Dim::Sym(_), _) => *x,
                    _ => *y,
                })
                .collect(),
        ),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// Fills unknown dims (or an unknown rank) from a declaration that agrees;
/// true when it disagrees (another rank, or another known size), and then the
/// inferred shape stands.
fn reconcile(inferred: Option<Vec<Dim>>, declared: Option<Vec<Dim>>) -> (Option<Vec<Dim>>, bool) {
    match (inferred, declared) {
        (Some(i), Some(d)) => {
            let agrees = i.len() == d.len()
                && i.iter().zip(&d).all(|(a, b)| !matches!((a, b), (Dim::Known(x), Dim::Known(y)) if x != y));
            if agrees {
                (refine(Some(i), Some(d)), false)
            } else {
                (Some(i), true)
            }
        }
        (i, None) => (i, false),
        (None, d) => (d, false),
    }
}

/// Shapes the op definitions of the consumers imply for values whose shape is
/// not (fully) known; true when anything was learned.
fn backward(g: &mut Graph) -> bool {
    let mut learned = false;
    for id in (0..g.nodes.len()).rev() {
        let node = &g.nodes[id];
        let Some(constraints) = node.def.and_then(|d| d.constraints) else { continue };
        for (slot, hint) in constraints(g, node) {
            let Some(v) = node.input(slot) else { continue };
            let value = &mut g.values[v];
            if value.initializer.is_some() {
                continue;
            }
            let before = value.shape.clone();
            // Only what is open: a symbolic dim (a graph input's batch) stays symbolic.
            let after = match &before {
                None => Some(hint),
                Some(b) if b.len() == hint.len() => Some(b.iter().zip(&hint).map(|(x, y)| if *x == Dim::Unknown { *y } else { *x }).collect()),
                Some(_) => before.clone(),
            };
            if after != before {
                value.shape = after;
                learned = true;
            }
        }
    }
    learned
}

/// The op's forward shape rule (none for ops the registry does not know).
fn infer_node(g: &Graph, n: &Node) -> Vec<crate::ops::ShapeOut> {
    n.def.and_then(|d| d.shape).map(|rule| rule(g, n)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::ir::{from_model, Dim, Graph};
    use crate::onnx::{load_model_bytes, Attr, GraphBuilder, TensorData};

    /// x [N, 3, 8, 8] -> Conv (4 filters, 3x3, no padding) -> Mystery (custom) -> Relu -> y.
    fn graph(value_info: &[(&str, &[i64])]) -> Graph {
        let mut b = GraphBuilder::new("t", 17);
        b.input("x", &[-1, 3, 8, 8]);
        b.initializer("W", &[4, 3, 3, 3], TensorData::Zeros);
        b.node("Conv", &["x", "W"], &["c"], &[("strides", Attr::Ints(vec![1, 1]))]);
        b.node_in_domain("com.example", "Mystery", &["c"], &["h"], &[]);
        b.node("Relu", &["h"], &["y"], &[]);
        b.output("y");
        for (name, dims) in value_info {
            b.value_info(name, dims);
        }
        from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds")
    }

    fn shape(g: &Graph, name: &str) -> Option<Vec<Dim>> {
        g.values[g.value_by_name(name).expect("value")].shape.clone()
    }

    #[test]
    fn value_info_fills_only_what_inference_leaves_open() {
        let g = graph(&[("c", &[-1, 4, 6, 6]), ("h", &[-1, 4, 5, 5])]);
        assert!(g.shape_conflicts.is_empty(), "{:?}", g.shape_conflicts);
        assert_eq!(shape(&g, "h").map(|s| s.len()), Some(4));
        assert_eq!(shape(&g, "y").expect("y")[2..], [Dim::Known(5), Dim::Known(5)]);
    }

    #[test]
    fn contradicting_value_info_is_a_conflict_and_inference_wins() {
        let g = graph(&[("c", &[-1, 4, 7, 7]), ("y", &[2, 2])]);
        let names: Vec<&str> = g.shape_conflicts.iter().map(|c| g.values[c.value].name.as_str()).collect();
        assert_eq!(names, ["c"], "{:?}", g.shape_conflicts);
        assert_eq!(shape(&g, "c").expect("c")[1..], [Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
        assert_eq!(g.shape_conflicts[0].declared, "[N, 4, 7, 7]");
        // y's rank is unknown to inference (after a custom op): the declaration fills it.
        assert_eq!(shape(&g, "y"), Some(vec![Dim::Known(2), Dim::Known(2)]));
    }

    #[test]
    fn conv_input_takes_the_weight_rank_through_an_unknown_op() {
        let mut b = GraphBuilder::new("t", 17);
        b.input("x", &[-1, 3, 8, 8]);
        b.initializer("W", &[5, 3, 1, 1], TensorData::Zeros);
        b.node_in_domain("com.example", "Mystery", &["x"], &["h"], &[]);
        b.node("Sigmoid", &["h"], &["s"], &[]);
        b.node("Conv", &["s", "W"], &["y"], &[]);
        b.output("y");
        let g = from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds");
        // backwards through Sigmoid to the custom op's output
        assert_eq!(shape(&g, "h"), Some(vec![Dim::Unknown, Dim::Known(3), Dim::Unknown, Dim::Unknown]));
        assert_eq!(shape(&g, "y").expect("y")[1], Dim::Known(5));
    }

    #[test]
    fn hostile_ranks_do_not_panic() {
        for op in ["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "Conv", "BatchNormalization", "Flatten", "Transpose"] {
            for rank in 0..3 {
                let mut b = GraphBuilder::new("t", 17);
                b.input("x", &vec![2; rank]);
                b.initializer("W", &vec![1; rank], TensorData::Zeros);
                b.node(op, &["x", "W", "W", "W", "W"], &["y"], &[("kernel_shape", Attr::Ints(vec![1; rank]))]);
                b.output("y");
                let g = from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds");
                let _ = crate::analysis::analyze(&g);
            }
        }
    }
}

