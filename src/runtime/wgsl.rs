//! The Rust/WGSL interface, written once. Tables and the uniform block are
//! declared here as Rust structs of 32-bit words ([`words!`]); the WGSL
//! declarations (the uniform struct, the table records with their loaders and
//! word offsets) and every shared constant are generated from them into a
//! prelude that is prepended to the shader source. The shader declares none
//! of them itself, so the two sides cannot drift apart.

/// A 32-bit word of a table or uniform block.
pub(crate) trait Word: Copy {
    /// The word's bits.
    fn bits(self) -> u32;
}

impl Word for u32 {
    fn bits(self) -> u32 {
        self
    }
}

impl Word for f32 {
    fn bits(self) -> u32 {
        self.to_bits()
    }
}

/// Declares a record of 32-bit words (`u32`/`f32` fields) shared with WGSL:
/// the Rust struct, its words in field order, and its field list for the
/// generated WGSL.
macro_rules! words {
    ($(#[$m:meta])* struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub(crate) struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }

        impl $name {
            /// Field names and WGSL types, in order.
            pub const FIELDS: &'static [(&'static str, &'static str)] = &[$((stringify!($field), stringify!($ty))),*];

            /// The record's words, in field order.
            pub fn words(&self) -> Vec<u32> {
                vec![$($crate::runtime::wgsl::Word::bits(self.$field)),*]
            }
        }
    };
}
pub(crate) use words;

/// WGSL `struct NAME { field: type, ... }` for a record.
pub(crate) fn struct_decl(name: &str, fields: &[(&str, &str)]) -> String {
    let mut s = format!("struct {name} {{\n");
    for (f, t) in fields {
        s += &format!("    {f}: {t},\n");
    }
    s + "}\n"
}

/// A table record read from `array<u32>` `table`: its struct, `const WORDS`,
/// and `fn load(at: u32) -> NAME` that reads the words starting at `at`.
pub(crate) fn table_record(name: &str, fields: &[(&str, &str)], words_const: &str, loader: &str, table: &str) -> String {
    let mut s = struct_decl(name, fields);
    s += &format!("const {words_const}: u32 = {}u;\n", fields.len());
    let reads: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            let w = format!("{table}[at + {i}u]");
            if *t == "f32" {
                format!("bitcast<f32>({w})")
            } else {
                w
            }
        })
        .collect();
    s += &format!("fn {loader}(at: u32) -> {name} {{\n    return {name}({});\n}}\n", reads.join(", "));
    s
}

/// `const PREFIX_FIELD: u32 = index;` for each field (word offsets into a record).
pub(crate) fn offsets(prefix: &str, fields: &[(&str, &str)]) -> String {
    fields.iter().enumerate().map(|(i, (f, _))| format!("const {prefix}{}: u32 = {i}u;\n", f.to_uppercase())).collect()
}

/// `const NAME: u32 = value;` lines.
pub(crate) fn constants(items: &[(&str, u32)]) -> String {
    items.iter().map(|(n, v)| format!("const {n}: u32 = {v}u;\n")).collect()
}

/// `override NAME: u32;` lines: pipeline-overridable constants, set when a
/// pipeline is built (`PipelineCompilationOptions::constants`).
pub(crate) fn overrides(names: &[&str]) -> String {
    names.iter().map(|n| format!("override {n}: u32;\n")).collect()
}

/// Every identifier the shader source itself declares with `const`, `struct`, `fn` or `override`.
#[cfg(test)]
pub(crate) fn declared(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        let t = line.trim_start();
        for kw in ["const ", "struct ", "fn ", "override "] {
            if let Some(rest) = t.strip_prefix(kw) {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.push(name);
            }
        }
    }
    out
}
