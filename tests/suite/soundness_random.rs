//! Randomized soundness check: random small graphs of the ops the analysis
//! reasons about, evaluated in float64 by a tiny reference evaluator; every
//! invariance the analysis claims (channel, layer, joint, dead) must hold
//! numerically. Deterministic seeds, so a failure reproduces.
use crate::common;

use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};
use common::random::{self, Rng, T};
use std::collections::HashMap;

fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let y = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            x.max(y)
        })
        .collect()
}

fn index_of(shape: &[usize], out_shape: &[usize], flat: usize) -> usize {
    // flat index in out_shape -> index in a broadcast operand of `shape`
    let r = out_shape.len();
    let mut rem = flat;
    let mut coords = vec![0; r];
    for i in (0..r).rev() {
        coords[i] = rem % out_shape[i];
        rem /= out_shape[i];
    }
    let mut idx = 0;
    for (k, &d) in shape.iter().enumerate() {
        let c = coords[r - shape.len() + k];
        idx = idx * d + if d == 1 { 0 } else { c };
    }
    idx
}

fn binary(a: &T, b: &T, f: impl Fn(f64, f64) -> f64) -> T {
    let shape = broadcast_shape(&a.shape, &b.shape);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            f(
                a.data[index_of(&a.shape, &shape, i)],
                b.data[index_of(&b.shape, &shape, i)],
            )
        })
        .collect();
    T { shape, data }
}

fn unary(a: &T, f: impl Fn(f64) -> f64) -> T {
    T {
        shape: a.shape.clone(),
        data: a.data.iter().map(|&x| f(x)).collect(),
    }
}

/// Rank-2 helpers: all activations here are [N, F].
fn matmul(a: &T, b: &T) -> T {
    let (n, k, m) = (a.shape[0], a.shape[1], b.shape[1]);
    let mut data = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            data[i * m + j] = (0..k).map(|t| a.data[i * k + t] * b.data[t * m + j]).sum();
        }
    }
    T {
        shape: vec![n, m],
        data,
    }
}

fn transpose(a: &T) -> T {
    let (n, m) = (a.shape[0], a.shape[1]);
    let mut data = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            data[j * n + i] = a.data[i * m + j];
        }
    }
    T {
        shape: vec![m, n],
        data,
    }
}

/// Mean over axis (keepdims) of a rank-2 tensor.
fn mean(a: &T, axis: usize) -> T {
    let (n, m) = (a.shape[0], a.shape[1]);
    if axis == 1 {
        T {
            shape: vec![n, 1],
            data: (0..n)
                .map(|i| (0..m).map(|j| a.data[i * m + j]).sum::<f64>() / m as f64)
                .collect(),
        }
    } else {
        T {
            shape: vec![1, m],
            data: (0..m)
                .map(|j| (0..n).map(|i| a.data[i * m + j]).sum::<f64>() / n as f64)
                .collect(),
        }
    }
}

/// Flags a normalization over a (near-)zero spread (see `random::mark_degenerate`).
fn check_spread(v: &T, reference: &T) {
    let scale = reference
        .data
        .iter()
        .fold(0f64, |m, x| m.max(x * x))
        .max(1e-300);
    if v.data.iter().any(|&x| x < 1e-12 * scale) {
        random::mark_degenerate();
    }
}

fn normalize(a: &T, axis: usize) -> T {
    let c = binary(a, &mean(a, axis), |x, y| x - y);
    let v = mean(&unary(&c, |x| x * x), axis);
    check_spread(&v, a);
    binary(&c, &v, |x, y| x / (y + 1e-30).sqrt())
}

fn concat(a: &T, b: &T) -> T {
    let n = a.shape[0];
    let (p, q) = (a.shape[1], b.shape[1]);
    let mut data = Vec::with_capacity(n * (p + q));
    for i in 0..n {
        data.extend_from_slice(&a.data[i * p..(i + 1) * p]);
        data.extend_from_slice(&b.data[i * q..(i + 1) * q]);
    }
    T {
        shape: vec![n, p + q],
        data,
    }
}

/// One node of a random graph.
#[derive(Clone, Debug)]
enum Op {
    MatMul(usize, String),
    AddParam(usize, String),
    MulParam(usize, String),
    Relu(usize),
    Sigmoid(usize),
    BatchNorm(usize, String, String),
    LayerNorm(usize, String, String),
    DecomposedLn(usize),
    Rms(usize),
    Concat(usize, usize),
    Add(usize, usize),
    TransposeTwice(usize),
    L2Normalize(usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Div(usize, usize),
    BatchCenter(usize),
    /// Stochastic depth / dropout by random ops: `v * (RandomUniformLike(v) < 0.5) / 0.5`,
    /// the draw averaged per sample (`true`: one factor per row) or not; the
    /// `u64` seeds the draw, fixed across evaluations like a generator state.
    DropMask(usize, u64, bool),
    /// `v * Bernoulli(0.3 * Relu(v))`: the mask reads the changed values.
    BernoulliMask(usize, u64),
}

struct Case {
    ops: Vec<Op>,
    params: HashMap<String, T>,
    x: T,
}

fn width(v: &[T], i: usize) -> usize {
    v[i].shape[1]
}

fn random_case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let n = 6;
    let f = 3 + rng.below(3);
    let x = T {
        shape: vec![n, f],
        data: (0..n * f).map(|_| rng.value()).collect(),
    };
    let mut vals = vec![x.clone()];
    let mut ops = Vec::new();
    let mut params = HashMap::new();
    let steps = 3 + rng.below(7);
    for s in 0..steps {
        let i = vals.len() - 1 - rng.below(vals.len().min(3));
        let w = width(&vals, i);
        let mut param = |rng: &mut Rng, name: String, shape: Vec<usize>| -> String {
            let len: usize = shape.iter().product();
            params.insert(
                name.clone(),
                T {
                    shape,
                    data: (0..len).map(|_| rng.value()).collect(),
                },
            );
            name
        };
        let same_width = |rng: &mut Rng, vals: &[T]| -> Option<usize> {
            let c: Vec<usize> = (0..vals.len()).filter(|&j| width(vals, j) == w).collect();
            (!c.is_empty()).then(|| c[rng.below(c.len())])
        };
        let op = match rng.below(19) {
            17 => Op::DropMask(i, 1000 * seed + s as u64, rng.below(2) == 0),
            18 => Op::BernoulliMask(i, 1000 * seed + s as u64),
            13 => Op::Sub(i, same_width(&mut rng, &vals).unwrap_or(i)),
            14 => Op::Mul(i, same_width(&mut rng, &vals).unwrap_or(i)),
            15 => Op::Div(i, same_width(&mut rng, &vals).unwrap_or(i)),
            16 => Op::BatchCenter(i),
            0 | 1 => {
                let g = 2 + rng.below(4);
                Op::MatMul(i, param(&mut rng, format!("W{s}"), vec![w, g]))
            }
            2 => Op::AddParam(i, param(&mut rng, format!("b{s}"), vec![w])),
            3 => Op::MulParam(i, param(&mut rng, format!("k{s}"), vec![w])),
            4 => Op::Relu(i),
            5 => Op::Sigmoid(i),
            6 => Op::BatchNorm(
                i,
                param(&mut rng, format!("bn{s}.g"), vec![w]),
                param(&mut rng, format!("bn{s}.b"), vec![w]),
            ),
            7 => Op::LayerNorm(
                i,
                param(&mut rng, format!("ln{s}.g"), vec![w]),
                param(&mut rng, format!("ln{s}.b"), vec![w]),
            ),
            8 => Op::DecomposedLn(i),
            9 => Op::Rms(i),
            10 => Op::Concat(i, vals.len() - 1),
            11 => {
                let j = (0..vals.len())
                    .rev()
                    .find(|&j| j != i && width(&vals, j) == w);
                match j {
                    Some(j) => Op::Add(i, j),
                    None => Op::TransposeTwice(i),
                }
            }
            _ => Op::L2Normalize(i),
        };
        let out = eval_op(&op, &vals, &params);
        vals.push(out);
        ops.push(op);
    }
    Case { ops, params, x }
}

fn eval_op(op: &Op, v: &[T], p: &HashMap<String, T>) -> T {
    match op {
        Op::MatMul(i, w) => matmul(&v[*i], &p[w]),
        Op::AddParam(i, b) => binary(&v[*i], &p[b], |x, y| x + y),
        Op::MulParam(i, k) => binary(&v[*i], &p[k], |x, y| x * y),
        Op::Relu(i) => unary(&v[*i], |x| x.max(0.0)),
        Op::Sigmoid(i) => unary(&v[*i], |x| 1.0 / (1.0 + (-x).exp())),
        Op::BatchNorm(i, g, b) => binary(
            &binary(&normalize(&v[*i], 0), &p[g], |x, y| x * y),
            &p[b],
            |x, y| x + y,
        ),
        Op::LayerNorm(i, g, b) => binary(
            &binary(&normalize(&v[*i], 1), &p[g], |x, y| x * y),
            &p[b],
            |x, y| x + y,
        ),
        Op::DecomposedLn(i) => normalize(&v[*i], 1),
        Op::Rms(i) => {
            let ms = mean(&unary(&v[*i], |x| x * x), 1);
            check_spread(&ms, &v[*i]);
            binary(&v[*i], &ms, |x, y| x / (y + 1e-30).sqrt())
        }
        Op::Concat(i, j) => concat(&v[*i], &v[*j]),
        Op::Add(i, j) => binary(&v[*i], &v[*j], |x, y| x + y),
        Op::TransposeTwice(i) => transpose(&transpose(&v[*i])),
        Op::L2Normalize(i) => {
            let ms = mean(&unary(&v[*i], |x| x * x), 1);
            check_spread(&ms, &v[*i]);
            let n2 = unary(&ms, |m| m.sqrt());
            binary(&v[*i], &n2, |x, y| x / y.max(1e-30))
        }
        Op::Sub(i, j) => binary(&v[*i], &v[*j], |x, y| x - y),
        Op::Mul(i, j) => binary(&v[*i], &v[*j], |x, y| x * y),
        Op::Div(i, j) => binary(&v[*i], &v[*j], |x, y| x / y),
        Op::BatchCenter(i) => binary(&v[*i], &mean(&v[*i], 0), |x, y| x - y),
        Op::DropMask(i, draw, per_sample) => {
            let u = uniform_like(&v[*i], *draw);
            let u = if *per_sample { mean(&u, 1) } else { u };
            binary(&v[*i], &unary(&u, |r| if r < 0.5 { 1.0 / 0.5 } else { 0.0 }), |x, m| x * m)
        }
        Op::BernoulliMask(i, draw) => {
            let u = uniform_like(&v[*i], *draw);
            let p = unary(&v[*i], |x| 0.3 * x.max(0.0));
            let m = binary(&u, &p, |r, p| if r < p { 1.0 } else { 0.0 });
            binary(&v[*i], &m, |x, m| x * m)
        }
    }
}

/// A fixed draw of uniforms shaped like `a` (the generator state is part of the case).
fn uniform_like(a: &T, draw: u64) -> T {
    let mut rng = Rng::new(draw);
    T {
        shape: a.shape.clone(),
        data: a.data.iter().map(|_| rng.unit()).collect(),
    }
}

fn eval(case: &Case, params: &HashMap<String, T>) -> T {
    let mut vals = vec![case.x.clone()];
    for op in &case.ops {
        let out = eval_op(op, &vals, params);
        vals.push(out);
    }
    vals.pop().expect("output")
}

/// The same graph in ONNX, with the params as initializers.
fn to_onnx(case: &Case) -> Vec<u8> {
    let mut b = GraphBuilder::new("random", 17);
    b.input("v0", &[-1, case.x.shape[1] as i64]);
    let f32s = |t: &T| TensorData::F32(t.data.iter().map(|&x| x as f32).collect());
    for (name, t) in &case.params {
        b.initializer(
            name,
            &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            f32s(t),
        );
    }
    b.initializer("two", &[], TensorData::F32(vec![2.0]));
    b.initializer("eps", &[], TensorData::F32(vec![1e-30]));
    b.initializer("ax1", &[1], TensorData::I64(vec![1]));
    b.initializer("half", &[], TensorData::F32(vec![0.5]));
    b.initializer("pt3", &[], TensorData::F32(vec![0.3]));
    for (s, op) in case.ops.iter().enumerate() {
        let v = |i: &usize| format!("v{i}");
        let out = format!("v{}", s + 1);
        let t = |k: &str| format!("t{s}_{k}");
        match op {
            Op::MatMul(i, w) => {
                b.node("MatMul", &[&v(i), w], &[&out], &[]);
            }
            Op::AddParam(i, p) => {
                b.node("Add", &[&v(i), p], &[&out], &[]);
            }
            Op::MulParam(i, p) => {
                b.node("Mul", &[&v(i), p], &[&out], &[]);
            }
            Op::Relu(i) => {
                b.node("Relu", &[&v(i)], &[&out], &[]);
            }
            Op::Sigmoid(i) => {
                b.node("Sigmoid", &[&v(i)], &[&out], &[]);
            }
            Op::BatchNorm(i, g, bb) => {
                let w = case.params[g].shape[0] as i64;
                b.initializer(&t("m"), &[w], TensorData::Zeros);
                b.initializer(&t("v"), &[w], TensorData::F32(vec![1.0; w as usize]));
                b.node(
                    "BatchNormalization",
                    &[&v(i), g, bb, &t("m"), &t("v")],
                    &[&out, &t("rm"), &t("rv")],
                    &[
                        ("training_mode", Attr::Int(1)),
                        ("epsilon", Attr::Float(1e-30)),
                    ],
                );
            }
            Op::LayerNorm(i, g, bb) => {
                b.node(
                    "LayerNormalization",
                    &[&v(i), g, bb],
                    &[&out],
                    &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(1e-30))],
                );
            }
            Op::DecomposedLn(i) | Op::Rms(i) => {
                let centered = if matches!(op, Op::DecomposedLn(_)) {
                    b.node("ReduceMean", &[&v(i), "ax1"], &[&t("mu")], &[]);
                    b.node("Sub", &[&v(i), &t("mu")], &[&t("c")], &[]);
                    t("c")
                } else {
                    v(i)
                };
                b.node("Pow", &[&centered, "two"], &[&t("sq")], &[]);
                b.node("ReduceMean", &[&t("sq"), "ax1"], &[&t("var")], &[]);
                b.node("Add", &[&t("var"), "eps"], &[&t("ve")], &[]);
                b.node("Sqrt", &[&t("ve")], &[&t("sd")], &[]);
                b.node("Div", &[&centered, &t("sd")], &[&out], &[]);
            }
            Op::Concat(i, j) => {
                b.node(
                    "Concat",
                    &[&v(i), &v(j)],
                    &[&out],
                    &[("axis", Attr::Int(1))],
                );
            }
            Op::Add(i, j) => {
                b.node("Add", &[&v(i), &v(j)], &[&out], &[]);
            }
            Op::TransposeTwice(i) => {
                b.node(
                    "Transpose",
                    &[&v(i)],
                    &[&t("tr")],
                    &[("perm", Attr::Ints(vec![1, 0]))],
                );
                b.node(
                    "Transpose",
                    &[&t("tr")],
                    &[&out],
                    &[("perm", Attr::Ints(vec![1, 0]))],
                );
            }
            Op::Sub(i, j) | Op::Mul(i, j) | Op::Div(i, j) => {
                let name = match op {
                    Op::Sub(..) => "Sub",
                    Op::Mul(..) => "Mul",
                    _ => "Div",
                };
                b.node(name, &[&v(i), &v(j)], &[&out], &[]);
            }
            Op::BatchCenter(i) => {
                b.initializer(&t("ax0"), &[1], TensorData::I64(vec![0]));
                b.node("ReduceMean", &[&v(i), &t("ax0")], &[&t("mu")], &[]);
                b.node("Sub", &[&v(i), &t("mu")], &[&out], &[]);
            }
            Op::DropMask(i, _, per_sample) => {
                b.node("RandomUniformLike", &[&v(i)], &[&t("u")], &[]);
                let u = if *per_sample {
                    b.node("ReduceMean", &[&t("u"), "ax1"], &[&t("um")], &[]);
                    t("um")
                } else {
                    t("u")
                };
                b.node("Less", &[&u, "half"], &[&t("keep")], &[]);
                b.node("Cast", &[&t("keep")], &[&t("kf")], &[("to", Attr::Int(1))]);
                b.node("Div", &[&t("kf"), "half"], &[&t("m")], &[]);
                b.node("Mul", &[&v(i), &t("m")], &[&out], &[]);
            }
            Op::BernoulliMask(i, _) => {
                b.node("Relu", &[&v(i)], &[&t("r")], &[]);
                b.node("Mul", &[&t("r"), "pt3"], &[&t("p")], &[]);
                b.node("Bernoulli", &[&t("p")], &[&t("m")], &[]);
                b.node("Mul", &[&v(i), &t("m")], &[&out], &[]);
            }
            Op::L2Normalize(i) => {
                // mean of squares then sqrt: a norm up to a constant factor
                b.node("Pow", &[&v(i), "two"], &[&t("sq")], &[]);
                b.node("ReduceMean", &[&t("sq"), "ax1"], &[&t("ms")], &[]);
                b.node("Sqrt", &[&t("ms")], &[&t("n")], &[]);
                b.node("Max", &[&t("n"), "eps"], &[&t("nc")], &[]);
                b.node("Div", &[&v(i), &t("nc")], &[&out], &[]);
            }
        }
    }
    b.output(&format!("v{}", case.ops.len()));
    b.to_bytes()
}

#[test]
fn every_claim_holds_on_random_graphs() {
    let (mut graphs, mut claims, mut masked) = (0, 0, 0);
    for seed in 1..=600u64 {
        let case = random_case(seed);
        let analysis = adamp_graph::analyze_bytes(to_onnx(&case))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        if let Some(n) = random::check_claims(
            seed,
            &analysis,
            &case.params,
            |p| eval(&case, p),
            || format!("ops: {:?}", case.ops),
        ) {
            graphs += 1;
            claims += n;
            if case.ops.iter().any(|op| matches!(op, Op::DropMask(..) | Op::BernoulliMask(..))) {
                masked += n;
            }
        }
    }
    assert!(masked > 30, "only {masked} claims on graphs with random masks: the generator is too weak");
    assert!(graphs > 450, "only {graphs} random graphs evaluated");
    assert!(
        claims > 200,
        "only {claims} claims checked: the generator is too weak"
    );
    eprintln!("{graphs} random graphs, {claims} invariance claims verified numerically ({masked} with random masks)");
}
