//! Attributes, declared once per op as typed handles.
//!
//! An op file declares every attribute its rules read as a handle
//! ([`IntAttr`], [`FloatAttr`], [`StrAttr`], ...): the ONNX name, type, range
//! and default, written once. The op's [`OpDef::attrs`](super::OpDef::attrs)
//! lists the handles' [`AttrSpec`]s; the IR builder checks every node against
//! them once ([`check_attributes`]): an attribute of the wrong type, a value
//! out of range or a missing required attribute is an error naming the node
//! and the attribute, never a silent default. The rules then read attributes
//! only through the handles, so each default lives in one place and the type a
//! rule reads is the type the builder checked.
use crate::ir::{AttrValue, DType, Graph, Node, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// The type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    /// INT
    Int,
    /// FLOAT
    Float,
    /// INTS
    Ints,
    /// FLOATS
    Floats,
    /// STRING
    Str,
    /// STRINGS
    Strings,
    /// TENSOR
    Tensor,
    /// GRAPH
    Graph,
}

impl AttrKind {
    /// The ONNX name of the type (`INTS`).
    pub fn onnx_name(self) -> &'static str {
        match self {
            AttrKind::Int => "INT",
            AttrKind::Float => "FLOAT",
            AttrKind::Ints => "INTS",
            AttrKind::Floats => "FLOATS",
            AttrKind::Str => "STRING",
            AttrKind::Strings => "STRINGS",
            AttrKind::Tensor => "TENSOR",
            AttrKind::Graph => "GRAPH",
        }
    }

    fn of(value: &AttrValue) -> Option<AttrKind> {
        Some(match value {
            AttrValue::Int(_) => AttrKind::Int,
            AttrValue::Float(_) => AttrKind::Float,
            AttrValue::Ints(_) => AttrKind::Ints,
            AttrValue::Floats(_) => AttrKind::Floats,
            AttrValue::Str(_) => AttrKind::Str,
            AttrValue::Strings(_) => AttrKind::Strings,
            AttrValue::Tensor(_) => AttrKind::Tensor,
            AttrValue::Graph(_) | AttrValue::Graphs(_) => AttrKind::Graph,
            // TENSORS, sparse tensors, type protos: no op reads them
            AttrValue::Tensors(_) | AttrValue::Other => return None,
        })
    }
}

/// The values an attribute may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrCheck {
    /// Any value of the type.
    Any,
    /// An INT, or every element of an INTS, at least this.
    AtLeast(i64),
    /// An INT that is 0 or 1.
    Flag,
    /// A STRING among these.
    OneOf(&'static [&'static str]),
}

/// What an absent attribute means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrDefault {
    /// The ONNX schema requires it: a node without it is refused when the IR is built.
    Required,
    /// Absent has its own meaning, which the rule that reads it states
    /// (a default that depends on the input's shape or the opset, or none).
    Absent,
    /// This INT.
    Int(i64),
    /// This FLOAT.
    Float(f32),
    /// This STRING.
    Str(&'static str),
}

/// An attribute an op reads: its name, type, range and default.
#[derive(Debug, Clone, Copy)]
pub struct AttrSpec {
    /// The attribute's name.
    pub name: &'static str,
    /// Its type.
    pub kind: AttrKind,
    /// Its range.
    pub check: AttrCheck,
    /// What its absence means.
    pub default: AttrDefault,
}

impl AttrSpec {
    const fn new(name: &'static str, kind: AttrKind, check: AttrCheck, default: AttrDefault) -> AttrSpec {
        AttrSpec { name, kind, check, default }
    }

    /// The spec's entry in the registry table: `axis=-1`, `perm`, `to!` (required).
    pub fn render(&self) -> String {
        match self.default {
            AttrDefault::Required => format!("{}!", self.name),
            AttrDefault::Absent => self.name.to_string(),
            AttrDefault::Int(i) => format!("{}={i}", self.name),
            AttrDefault::Float(f) => format!("{}={f}", self.name),
            AttrDefault::Str(s) => format!("{}={s}", self.name),
        }
    }

    /// What is wrong with `value` for this attribute, if anything.
    fn problem(&self, value: &AttrValue) -> Option<String> {
        // an attribute of a type no op reads: read as absent
        let kind = AttrKind::of(value)?;
        if kind != self.kind {
            return Some(format!("is of type {}; the op takes {}", kind.onnx_name(), self.kind.onnx_name()));
        }
        self.out_of_range(value)
    }

    fn out_of_range(&self, value: &AttrValue) -> Option<String> {
        match (self.check, value) {
            (AttrCheck::AtLeast(k), AttrValue::Int(v)) if *v < k => Some(format!("is {v}; it must be at least {k}")),
            (AttrCheck::AtLeast(k), AttrValue::Ints(vs)) => vs.iter().find(|&&v| v < k).map(|v| format!("holds {v}; every element must be at least {k}")),
            (AttrCheck::Flag, AttrValue::Int(v)) if *v != 0 && *v != 1 => Some(format!("is {v}; it must be 0 or 1")),
            (AttrCheck::OneOf(allowed), AttrValue::Str(s)) if !allowed.contains(&s.as_str()) => {
                Some(format!("is '{}'; it must be one of {}", s.escape_debug(), allowed.join(", ")))
            }
            _ => None,
        }
    }

    /// What is wrong with the declared default, if anything (a registry test
    /// checks every op's; a default out of its own range is a typo).
    pub fn default_problem(&self) -> Option<String> {
        let value = match (self.default, self.kind) {
            (AttrDefault::Required | AttrDefault::Absent, _) => return None,
            (AttrDefault::Int(i), AttrKind::Int) => AttrValue::Int(i),
            (AttrDefault::Float(f), AttrKind::Float) => AttrValue::Float(f),
            (AttrDefault::Str(s), AttrKind::Str) => AttrValue::Str(s.to_string()),
            (d, k) => return Some(format!("default {d:?} is not a {}", k.onnx_name())),
        };
        self.out_of_range(&value).map(|p| format!("default {p}"))
    }
}

/// `head`'s specs followed by `tail`'s, as an array of `N` (for ops whose
/// attributes extend their family's shared list): `N` must be the sum, or
/// the constant does not compile.
pub const fn extend<const N: usize>(head: &[AttrSpec], tail: &[AttrSpec]) -> [AttrSpec; N] {
    assert!(head.len() + tail.len() == N, "extend: N is not the two lists' length");
    let filler = AttrSpec::new("", AttrKind::Int, AttrCheck::Any, AttrDefault::Absent);
    let mut out = [filler; N];
    let mut i = 0;
    while i < head.len() {
        out[i] = head[i];
        i += 1;
    }
    let mut j = 0;
    while j < tail.len() {
        out[i + j] = tail[j];
        j += 1;
    }
    out
}

/// The first attribute of a node its op's definition refuses: `(name, what is wrong)`.
pub(crate) fn check_attributes(def: &super::OpDef, attrs: &HashMap<String, AttrValue>) -> Result<(), (String, String)> {
    for spec in def.attrs {
        match attrs.get(spec.name) {
            Some(v) => {
                if let Some(problem) = spec.problem(v) {
                    return Err((spec.name.to_string(), problem));
                }
            }
            None if spec.default == AttrDefault::Required => {
                return Err((spec.name.to_string(), format!("is missing; the op requires it ({})", spec.kind.onnx_name())));
            }
            None => {}
        }
    }
    Ok(())
}

/// True when the node's op declares `spec` (its name and type).
fn declares(spec: &AttrSpec, n: &Node) -> bool {
    n.def.is_none_or(|d| d.attrs.iter().any(|s| s.name == spec.name && s.kind == spec.kind))
}

/// Reads of attributes their ops do not declare, as `op.attribute`.
static UNDECLARED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Every attribute a rule has read although its op does not declare it (`op.attribute`),
/// since the process started. A bug in the rule, never the model's: the
/// op sweep and the zoo tests require it to stay empty.
#[doc(hidden)]
pub fn undeclared_reads() -> Vec<String> {
    UNDECLARED.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default()
}

/// A node's attribute through its op's declaration. Reading an attribute the
/// op does not declare is a bug in the rule (the builder never checked it):
/// it is recorded ([`undeclared_reads`]), the value read as absent, and the
/// tests fail on it; no model can make it panic. A rule shared by ops of which
/// only some have the attribute reads it with `get_if_declared` (every handle
/// has it): absent, and not recorded, for the ops without it.
fn read<'n>(spec: &AttrSpec, n: &'n Node) -> Option<&'n AttrValue> {
    if !declares(spec, n) {
        if let Ok(mut seen) = UNDECLARED.lock() {
            seen.insert(format!("{}.{}", n.op_type, spec.name));
        }
        return None;
    }
    n.attrs.get(spec.name)
}

/// A handle type: its spec, `is_set`, and `get`: the node's value of the
/// type, `Option`al, or (`default:`) falling back to the default;
/// `get_if_declared` reads it as absent for ops that do not have it.
macro_rules! handle {
    (@common $name:ident, $variant:ident, |$v:ident| $read:expr, $out:ty) => {
        impl $name {
            /// True when the node sets the attribute.
            pub fn is_set(&self, n: &Node) -> bool {
                read(&self.spec, n).is_some()
            }

            fn value<'n>(&self, n: &'n Node) -> Option<$out> {
                match read(&self.spec, n) {
                    Some(AttrValue::$variant($v)) => Some($read),
                    _ => None,
                }
            }

            /// The value for a rule shared by ops of which only some have the
            /// attribute: for the others, absent.
            fn value_if_declared<'n>(&self, n: &'n Node) -> Option<$out> {
                declares(&self.spec, n).then(|| self.value(n)).flatten()
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $variant:ident, |$v:ident| $read:expr, $out:ty, optional) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name {
            /// The declaration the op lists in [`OpDef::attrs`](super::OpDef::attrs).
            pub spec: AttrSpec,
        }
        handle!(@common $name, $variant, |$v| $read, $out);
        impl $name {
            /// The node's value, if set.
            pub fn get<'n>(&self, n: &'n Node) -> Option<$out> {
                self.value(n)
            }

            /// The node's value, if its op has the attribute and sets it.
            pub fn get_if_declared<'n>(&self, n: &'n Node) -> Option<$out> {
                self.value_if_declared(n)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $variant:ident, |$v:ident| $read:expr, $out:ty, default: $d:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name {
            /// The declaration the op lists in [`OpDef::attrs`](super::OpDef::attrs).
            pub spec: AttrSpec,
            default: $d,
        }
        handle!(@common $name, $variant, |$v| $read, $out);
        impl $name {
            /// The node's value, or the default.
            pub fn get<'n>(&self, n: &'n Node) -> $out {
                self.value(n).unwrap_or(self.default)
            }

            /// The node's value if its op has the attribute and sets it, else the default.
            pub fn get_if_declared<'n>(&self, n: &'n Node) -> $out {
                self.value_if_declared(n).unwrap_or(self.default)
            }
        }
    };
}

handle!(
    /// An INT with a default.
    IntAttr, Int, |i| *i, i64, default: i64
);
impl IntAttr {
    /// An INT in `check`, `default` when absent.
    pub const fn new(name: &'static str, check: AttrCheck, default: i64) -> IntAttr {
        IntAttr { spec: AttrSpec::new(name, AttrKind::Int, check, AttrDefault::Int(default)), default }
    }
    /// A 0/1 INT, `default` when absent.
    pub const fn flag(name: &'static str, default: bool) -> IntAttr {
        IntAttr { spec: AttrSpec::new(name, AttrKind::Int, AttrCheck::Flag, AttrDefault::Int(default as i64)), default: default as i64 }
    }
    /// The node's value as a flag.
    pub fn on(&self, n: &Node) -> bool {
        self.get(n) != 0
    }
    /// The element type an ONNX `TensorProto.DataType` code names (`None`: not an int32 code).
    pub fn dtype(&self, n: &Node) -> Option<DType> {
        dtype_of(self.get(n))
    }
}

/// The element type of an ONNX `TensorProto.DataType` code (`None` beyond int32).
fn dtype_of(code: i64) -> Option<DType> {
    i32::try_from(code).ok().map(DType::from_onnx)
}

handle!(
    /// An INT whose absence the rule interprets (or that the op requires).
    OptIntAttr, Int, |i| *i, i64, optional
);
impl OptIntAttr {
    /// An INT in `check`; absent means what the reading rule says.
    pub const fn new(name: &'static str, check: AttrCheck) -> OptIntAttr {
        OptIntAttr { spec: AttrSpec::new(name, AttrKind::Int, check, AttrDefault::Absent) }
    }
    /// An INT the op requires.
    pub const fn required(name: &'static str, check: AttrCheck) -> OptIntAttr {
        OptIntAttr { spec: AttrSpec::new(name, AttrKind::Int, check, AttrDefault::Required) }
    }
    /// The element type an ONNX `TensorProto.DataType` code names, if set (and an int32 code).
    pub fn dtype(&self, n: &Node) -> Option<DType> {
        self.get(n).and_then(dtype_of)
    }
}

handle!(
    /// A FLOAT with a default.
    FloatAttr, Float, |f| *f, f32, default: f32
);
impl FloatAttr {
    /// A FLOAT, `default` when absent.
    pub const fn new(name: &'static str, default: f32) -> FloatAttr {
        FloatAttr { spec: AttrSpec::new(name, AttrKind::Float, AttrCheck::Any, AttrDefault::Float(default)), default }
    }
}

handle!(
    /// A FLOAT whose absence the rule interprets.
    OptFloatAttr, Float, |f| *f, f32, optional
);
impl OptFloatAttr {
    /// A FLOAT; absent means what the reading rule says.
    pub const fn new(name: &'static str) -> OptFloatAttr {
        OptFloatAttr { spec: AttrSpec::new(name, AttrKind::Float, AttrCheck::Any, AttrDefault::Absent) }
    }
}

handle!(
    /// An INTS (absent: the reading rule's default, usually one per axis).
    IntsAttr, Ints, |v| v.as_slice(), &'n [i64], optional
);
impl IntsAttr {
    /// An INTS whose elements are in `check`.
    pub const fn new(name: &'static str, check: AttrCheck) -> IntsAttr {
        IntsAttr { spec: AttrSpec::new(name, AttrKind::Ints, check, AttrDefault::Absent) }
    }
    /// An INTS the op requires.
    pub const fn required(name: &'static str, check: AttrCheck) -> IntsAttr {
        IntsAttr { spec: AttrSpec::new(name, AttrKind::Ints, check, AttrDefault::Required) }
    }
}

handle!(
    /// A FLOATS.
    FloatsAttr, Floats, |v| v.as_slice(), &'n [f32], optional
);
impl FloatsAttr {
    /// A FLOATS.
    pub const fn new(name: &'static str) -> FloatsAttr {
        FloatsAttr { spec: AttrSpec::new(name, AttrKind::Floats, AttrCheck::Any, AttrDefault::Absent) }
    }
}

handle!(
    /// A STRING with a default.
    StrAttr, Str, |s| s.as_str(), &'n str, default: &'static str
);
impl StrAttr {
    /// A STRING in `check`, `default` when absent.
    pub const fn new(name: &'static str, check: AttrCheck, default: &'static str) -> StrAttr {
        StrAttr { spec: AttrSpec::new(name, AttrKind::Str, check, AttrDefault::Str(default)), default }
    }
}

handle!(
    /// A STRING whose absence the rule interprets (or that the op requires).
    OptStrAttr, Str, |s| s.as_str(), &'n str, optional
);
impl OptStrAttr {
    /// A STRING in `check`; absent means what the reading rule says.
    pub const fn new(name: &'static str, check: AttrCheck) -> OptStrAttr {
        OptStrAttr { spec: AttrSpec::new(name, AttrKind::Str, check, AttrDefault::Absent) }
    }
    /// A STRING the op requires.
    pub const fn required(name: &'static str, check: AttrCheck) -> OptStrAttr {
        OptStrAttr { spec: AttrSpec::new(name, AttrKind::Str, check, AttrDefault::Required) }
    }
}

handle!(
    /// A STRINGS.
    StringsAttr, Strings, |v| v.as_slice(), &'n [String], optional
);
impl StringsAttr {
    /// A STRINGS.
    pub const fn new(name: &'static str) -> StringsAttr {
        StringsAttr { spec: AttrSpec::new(name, AttrKind::Strings, AttrCheck::Any, AttrDefault::Absent) }
    }
}

handle!(
    /// A TENSOR.
    TensorAttr, Tensor, |t| t, &'n Tensor, optional
);
impl TensorAttr {
    /// A TENSOR.
    pub const fn new(name: &'static str) -> TensorAttr {
        TensorAttr { spec: AttrSpec::new(name, AttrKind::Tensor, AttrCheck::Any, AttrDefault::Absent) }
    }
}

handle!(
    /// A GRAPH (a subgraph body or branch), required.
    GraphAttr, Graph, |g| &**g, &'n Graph, optional
);
impl GraphAttr {
    /// A GRAPH the op requires.
    pub const fn required(name: &'static str) -> GraphAttr {
        GraphAttr { spec: AttrSpec::new(name, AttrKind::Graph, AttrCheck::Any, AttrDefault::Required) }
    }
}
