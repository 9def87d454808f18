//! The fuzz targets, shared by the AFL binaries (`fuzz/src/bin/*.rs`) and the
//! corpus replay that CI runs as an ordinary test (`tests/suite/fuzz_corpus.rs`).
//! Each takes arbitrary bytes and must return, never panic or abort; errors are
//! the expected answer to most inputs.
use adamp_graph::cli::{render_analysis, render_plan, Format, PlanFormat};
use adamp_graph::onnx::{load_model_bytes, LoadLimits};
use adamp_graph::optim::{Algorithm, Config, Detect};
use adamp_graph::plan::build;
use adamp_graph::rewrite::{rewrite as rewrite_model, Loss, Options};

/// Limits small enough that one execution stays fast and small, as a fuzzer needs.
pub fn fuzz_limits() -> LoadLimits {
    LoadLimits { max_inflated_bytes: 16 << 20, entries_floor: 1 << 16, entries_per_byte: 2 }
}

/// Decoding: the loader, then encoding back and decoding again.
pub fn load(data: &[u8]) {
    let Ok(model) = adamp_graph::onnx::load_model_bytes_with(data.to_vec(), &fuzz_limits()) else { return };
    if let Ok(bytes) = model.encode() {
        // What was encoded decodes: the loader accepts its own output.
        if let Err(e) = load_model_bytes(bytes) {
            panic!("a loaded model re-encodes into bytes that do not load: {e}");
        }
    }
}

/// The IR and the analysis, rendered the ways the CLI renders them.
pub fn analyze(data: &[u8]) {
    let Ok(model) = adamp_graph::onnx::load_model_bytes_with(data.to_vec(), &fuzz_limits()) else { return };
    let Ok(graph) = adamp_graph::ir::from_model(&model) else { return };
    let analysis = adamp_graph::analysis::analyze(&graph);
    let _ = render_analysis(&analysis, Format::Table);
    let json = render_analysis(&analysis, Format::Json);
    assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "analysis JSON does not parse");
}

/// Plans for both projected optimizers in every format.
pub fn plan(data: &[u8]) {
    let Ok(model) = adamp_graph::onnx::load_model_bytes_with(data.to_vec(), &fuzz_limits()) else { return };
    let Ok(graph) = adamp_graph::ir::from_model(&model) else { return };
    let analysis = adamp_graph::analysis::analyze(&graph);
    for algorithm in [Algorithm::Adamp, Algorithm::Sgdp] {
        let Ok(plan) = build(&analysis, &Config::defaults(algorithm)) else { continue };
        for format in [PlanFormat::Json, PlanFormat::Table, PlanFormat::Torch] {
            let _ = render_plan(&plan, format);
        }
    }
}

/// The training-step rewrite under both losses, and its output loads again.
pub fn rewrite(data: &[u8]) {
    let Ok(model) = adamp_graph::onnx::load_model_bytes_with(data.to_vec(), &fuzz_limits()) else { return };
    for (loss, algorithm, detect) in [(Loss::Mse, Algorithm::Adamp, Detect::Auto), (Loss::CrossEntropy, Algorithm::Sgdp, Detect::Static)] {
        let opts = Options { loss, config: Config::defaults(algorithm), detect, plan: None, gradients: true };
        let Ok(step) = rewrite_model(&model, &opts) else { continue };
        if let Ok(bytes) = step.encode() {
            let again = match load_model_bytes(bytes) {
                Ok(m) => m,
                Err(e) => panic!("a step graph that does not load: {e}"),
            };
            if let Err(e) = adamp_graph::ir::from_model(&again) {
                panic!("a step graph whose IR does not build: {e}");
            }
        }
    }
}

/// Every target on one input.
pub fn all(data: &[u8]) {
    load(data);
    analyze(data);
    plan(data);
    rewrite(data);
}

/// Structure-aware: `data` picks a seed model (a valid zoo graph) and a list
/// of mutations of its ops, attributes, dims and wiring, applied on the
/// protobuf structure; the mutated model goes through every target.
pub fn mutate(seeds: &[Vec<u8>], data: &[u8]) {
    if let Some(model) = mutated(seeds, data) {
        all(&model);
    }
}

/// The model [`mutate`] feeds the targets (saved as a regression when it crashes).
pub fn mutated(seeds: &[Vec<u8>], data: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = Bytes { data, at: 0 };
    let seed = seeds.get(usize::from(bytes.next()) % seeds.len().max(1))?;
    let mut model = wire::parse(seed, wire::Kind::Model)?;
    let rounds = 1 + bytes.next() % 8;
    for _ in 0..rounds {
        mutation::apply(&mut model, &mut bytes);
    }
    Some(wire::encode(&model))
}

/// The fuzzer's bytes as a stream of choices (zero once exhausted).
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (usize::from(self.next()) << 8 | usize::from(self.next())) % n
    }
}

/// A generic protobuf tree: fields in order, sub-messages parsed where the
/// ONNX schema says a field is one. Only what the mutations touch is typed.
mod wire {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Model,
        Graph,
        Node,
        Attribute,
        Tensor,
        ValueInfo,
        Type,
        TypeTensor,
        Shape,
        Dim,
    }

    #[derive(Debug, Clone)]
    pub enum Value {
        Varint(u64),
        Fixed64(u64),
        Fixed32(u32),
        Bytes(Vec<u8>),
        Message(Kind, Vec<Field>),
    }

    #[derive(Debug, Clone)]
    pub struct Field {
        pub number: u64,
        pub value: Value,
    }

    fn child(kind: Kind, field: u64) -> Option<Kind> {
        use Kind::*;
        Some(match (kind, field) {
            (Model, 7) => Graph,
            (Graph, 1) => Node,
            (Graph, 5) => Tensor,
            (Graph, 11..=13) => ValueInfo,
            (Node, 5) => Attribute,
            (Attribute, 5 | 10) => Tensor,
            (Attribute, 6 | 11) => Graph,
            (ValueInfo, 2) => Type,
            (Type, 1) => TypeTensor,
            (TypeTensor, 2) => Shape,
            (Shape, 1) => Dim,
            _ => return None,
        })
    }

    pub fn parse(mut buf: &[u8], kind: Kind) -> Option<Vec<Field>> {
        let mut fields = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let number = key >> 3;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut buf)?),
                1 => {
                    let (b, rest) = buf.split_at_checked(8)?;
                    buf = rest;
                    Value::Fixed64(u64::from_le_bytes(b.try_into().ok()?))
                }
                5 => {
                    let (b, rest) = buf.split_at_checked(4)?;
                    buf = rest;
                    Value::Fixed32(u32::from_le_bytes(b.try_into().ok()?))
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    let (body, rest) = buf.split_at_checked(len)?;
                    buf = rest;
                    match child(kind, number) {
                        Some(sub) => Value::Message(sub, parse(body, sub)?),
                        None => Value::Bytes(body.to_vec()),
                    }
                }
                _ => return None,
            };
            fields.push(Field { number, value });
        }
        Some(fields)
    }

    pub fn encode(fields: &[Field]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            match &f.value {
                Value::Varint(v) => {
                    put_varint(&mut out, f.number << 3);
                    put_varint(&mut out, *v);
                }
                Value::Fixed64(v) => {
                    put_varint(&mut out, f.number << 3 | 1);
                    out.extend(v.to_le_bytes());
                }
                Value::Fixed32(v) => {
                    put_varint(&mut out, f.number << 3 | 5);
                    out.extend(v.to_le_bytes());
                }
                Value::Bytes(b) => {
                    put_varint(&mut out, f.number << 3 | 2);
                    put_varint(&mut out, b.len() as u64);
                    out.extend(b);
                }
                Value::Message(_, sub) => {
                    let body = encode(sub);
                    put_varint(&mut out, f.number << 3 | 2);
                    put_varint(&mut out, body.len() as u64);
                    out.extend(body);
                }
            }
        }
        out
    }

    fn varint(buf: &mut &[u8]) -> Option<u64> {
        prost::encoding::decode_varint(buf).ok()
    }

    pub fn put_varint(out: &mut Vec<u8>, v: u64) {
        prost::encoding::encode_varint(v, out);
    }
}

/// Mutations of ONNX structure on the generic tree.
mod mutation {
    use super::wire::{put_varint, Field, Kind, Value};
    use super::Bytes;

    /// Ops the zoo uses and their neighbours: a swapped op keeps the wiring
    /// and attributes of the old one, which is where rules meet surprises.
    const OPS: &[&str] = &[
        "Conv", "ConvTranspose", "BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
        "RMSNormalization", "LpNormalization", "Relu", "Gelu", "Sigmoid", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div",
        "Pow", "Sqrt", "MatMul", "Gemm", "Einsum", "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Squeeze",
        "Unsqueeze", "Expand", "Tile", "Pad", "Gather", "GatherElements", "ReduceMean", "ReduceSum", "ReduceL2", "ReduceMax",
        "GlobalAveragePool", "MaxPool", "AveragePool", "Resize", "Where", "Cast", "Identity", "Dropout", "Constant",
        "ConstantOfShape", "Shape", "Size", "Range", "If", "Loop", "Clip", "Abs", "Neg", "Erf", "Tanh", "CumSum", "Trilu",
        "RandomUniformLike", "RandomNormalLike", "Bernoulli", "Less", "Equal", "Not", "ArgMax", "NonZero", "Unknown",
    ];

    /// Values where arithmetic breaks: signs, zero, one, type limits.
    const EDGES: &[i64] = &[0, 1, -1, 2, -2, 3, 4, 7, 8, 64, 255, 1 << 31, -(1 << 31), 1 << 40, i64::MAX, i64::MIN];

    fn edge(bytes: &mut Bytes) -> i64 {
        let b = bytes.next();
        match EDGES.get(usize::from(b)) {
            Some(&v) => v,
            None => i64::from(b as i8),
        }
    }

    /// Paths (child indices) to every message of `kind`.
    fn find(fields: &[Field], kind: Kind, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        for (i, f) in fields.iter().enumerate() {
            if let Value::Message(k, sub) = &f.value {
                path.push(i);
                if *k == kind {
                    out.push(path.clone());
                }
                find(sub, kind, path, out);
                path.pop();
            }
        }
    }

    fn at<'a>(mut fields: &'a mut Vec<Field>, path: &[usize]) -> Option<&'a mut Vec<Field>> {
        for &i in path {
            match &mut fields.get_mut(i)?.value {
                Value::Message(_, sub) => fields = sub,
                _ => return None,
            }
        }
        Some(fields)
    }

    fn pick<'a>(model: &'a mut Vec<Field>, kind: Kind, bytes: &mut Bytes) -> Option<(&'a mut Vec<Field>, Vec<usize>)> {
        let mut all = Vec::new();
        find(model, kind, &mut Vec::new(), &mut all);
        let path = all.get(bytes.below(all.len()))?.clone();
        Some((at(model, &path)?, path))
    }

    /// Names of values (node inputs and outputs) anywhere in the model.
    fn names(fields: &[Field], out: &mut Vec<Vec<u8>>) {
        for f in fields {
            if let Value::Message(kind, sub) = &f.value {
                if *kind == Kind::Node {
                    out.extend(sub.iter().filter(|g| g.number == 1 || g.number == 2).filter_map(|g| match &g.value {
                        Value::Bytes(b) => Some(b.clone()),
                        _ => None,
                    }));
                }
                names(sub, out);
            }
        }
    }

    fn set_int(f: &mut Field, v: i64) {
        match &mut f.value {
            Value::Varint(x) => *x = v as u64,
            Value::Bytes(packed) => {
                // A packed list: replaced by one element (or extended).
                let mut out = Vec::new();
                put_varint(&mut out, v as u64);
                *packed = out;
            }
            _ => {}
        }
    }

    pub fn apply(model: &mut Vec<Field>, bytes: &mut Bytes) {
        let mut value_names = Vec::new();
        names(model, &mut value_names);
        match bytes.next() % 11 {
            // an op for another
            0 => {
                if let Some((node, _)) = pick(model, Kind::Node, bytes) {
                    let op = OPS[bytes.below(OPS.len())].as_bytes().to_vec();
                    match node.iter_mut().find(|f| f.number == 4) {
                        Some(f) => f.value = Value::Bytes(op),
                        None => node.push(Field { number: 4, value: Value::Bytes(op) }),
                    }
                }
            }
            // an INT attribute, or one of INTS
            1 | 2 => {
                if let Some((attr, _)) = pick(model, Kind::Attribute, bytes) {
                    let v = edge(bytes);
                    let targets: Vec<&mut Field> = attr.iter_mut().filter(|f| f.number == 3 || f.number == 8).collect();
                    let n = targets.len();
                    if let Some(f) = targets.into_iter().nth(bytes.below(n)) {
                        set_int(f, v);
                    } else {
                        attr.push(Field { number: 3, value: Value::Varint(v as u64) });
                    }
                }
            }
            // a tensor's dims
            3 => {
                if let Some((t, _)) = pick(model, Kind::Tensor, bytes) {
                    let v = edge(bytes);
                    let dims: Vec<&mut Field> = t.iter_mut().filter(|f| f.number == 1).collect();
                    let n = dims.len();
                    match dims.into_iter().nth(bytes.below(n)) {
                        Some(f) => set_int(f, v),
                        None => t.push(Field { number: 1, value: Value::Varint(v as u64) }),
                    }
                }
            }
            // a declared dim
            4 => {
                if let Some((d, _)) = pick(model, Kind::Dim, bytes) {
                    let v = edge(bytes);
                    d.retain(|f| f.number != 1 && f.number != 2);
                    d.push(Field { number: 1, value: Value::Varint(v as u64) });
                }
            }
            // remove or duplicate a node
            5 | 6 => {
                let remove = bytes.next() % 2 == 0;
                let mut all = Vec::new();
                find(model, Kind::Node, &mut Vec::new(), &mut all);
                if let Some(path) = all.get(bytes.below(all.len())).cloned() {
                    if let Some((&last, parent)) = path.split_last() {
                        if let Some(fields) = at(model, parent) {
                            if remove {
                                fields.remove(last);
                            } else if let Some(f) = fields.get(last).cloned() {
                                fields.insert(last + 1, f);
                            }
                        }
                    }
                }
            }
            // rewire an input (or output) to another value
            7 | 8 => {
                let which = if bytes.next() % 4 == 0 { 2 } else { 1 };
                if let Some((node, _)) = pick(model, Kind::Node, bytes) {
                    let new = value_names.get(bytes.below(value_names.len())).cloned().unwrap_or_default();
                    let slots: Vec<&mut Field> = node.iter_mut().filter(|f| f.number == which).collect();
                    let n = slots.len();
                    if let Some(f) = slots.into_iter().nth(bytes.below(n)) {
                        f.value = Value::Bytes(new);
                    }
                }
            }
            // drop or add a node input
            9 => {
                if let Some((node, _)) = pick(model, Kind::Node, bytes) {
                    if bytes.next() % 2 == 0 {
                        if let Some(i) = node.iter().rposition(|f| f.number == 1) {
                            node.remove(i);
                        }
                    } else {
                        let new = value_names.get(bytes.below(value_names.len())).cloned().unwrap_or_default();
                        node.push(Field { number: 1, value: Value::Bytes(new) });
                    }
                }
            }
            // an attribute's declared type
            _ => {
                if let Some((attr, _)) = pick(model, Kind::Attribute, bytes) {
                    let t = u64::from(bytes.next() % 16);
                    attr.retain(|f| f.number != 20);
                    attr.push(Field { number: 20, value: Value::Varint(t) });
                }
            }
        }
    }
}

/// The zoo models small enough to be seeds (uncompressed, under 40 KB).
pub fn zoo_seeds(fixtures: &std::path::Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(fixtures.join("zoo"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "onnx") && std::fs::metadata(p).is_ok_and(|m| m.len() < 40_000));
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}
