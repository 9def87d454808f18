//! NumPy `.npz` archives: a zip of `.npy` members, as `numpy.savez` (stored)
//! and `numpy.savez_compressed` (deflate) write them.
//!
//! The zip layer is the `zip` crate; the `.npy` header (format versions 1.0,
//! 2.0 and 3.0) is parsed here. Every size a file claims is checked against
//! what the file can hold before anything is allocated for it, and the data
//! buffer grows only as bytes actually arrive, so a hostile archive costs an
//! error, not memory. Arrays come out in C order and little-endian: Fortran
//! order is transposed and big-endian data byte-swapped on load.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `.npy` magic string.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Largest `.npy` header accepted. numpy itself refuses headers over 10 000
/// bytes unless told to trust the file; this leaves room without letting a
/// header claim gigabytes.
const MAX_HEADER_LEN: u64 = 1 << 20;
/// Deflate expands data at most about 1032:1, so a deflated member that claims
/// more than this times its compressed size is lying.
const MAX_DEFLATE_RATIO: u64 = 1100;
/// Capacity reserved up front for one array's data; beyond it the buffer grows
/// with the bytes that really arrive.
const MAX_INITIAL_CAPACITY: usize = 1 << 24;
/// Nesting depth of the header's Python literal (a real header nests 2 deep;
/// structured dtypes a few more).
const MAX_LITERAL_DEPTH: usize = 32;
/// Largest central directory read for the duplicate-name check.
const MAX_CENTRAL_DIRECTORY: u64 = 64 << 20;

/// What reading or writing an `.npz`, or converting one of its arrays, can go
/// wrong with. Each names the file and, where there is one, the array.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The archive.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not a zip archive, or its directory is unreadable.
    #[error("{path}: not a readable .npz (zip) archive: {detail}")]
    NotZip {
        /// The archive.
        path: PathBuf,
        /// What the zip reader found.
        detail: String,
    },
    /// A member is not an `.npy` array this reader can take (a directory, an
    /// encrypted member, an unknown compression method, another file type).
    #[error("{path}: member `{entry}`: {detail}")]
    Entry {
        /// The archive.
        path: PathBuf,
        /// The member's name in the zip.
        entry: String,
        /// Why it is refused.
        detail: String,
    },
    /// An array's bytes end before its header says they should.
    #[error("{path}: array `{array}` is truncated: {detail}")]
    Truncated {
        /// The archive.
        path: PathBuf,
        /// The array (member name without `.npy`).
        array: String,
        /// How much was expected and found.
        detail: String,
    },
    /// An array's bytes are damaged (bad deflate stream, checksum mismatch).
    #[error("{path}: array `{array}` is corrupt: {detail}")]
    Corrupt {
        /// The archive.
        path: PathBuf,
        /// The array.
        array: String,
        /// What the decoder reported.
        detail: String,
    },
    /// The `.npy` header is malformed.
    #[error("{path}: array `{array}`: bad .npy header: {detail}")]
    Header {
        /// The archive.
        path: PathBuf,
        /// The array.
        array: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The array's dtype is not one this reader converts (strings, objects,
    /// structured records, complex, datetimes, ...).
    #[error("{path}: array `{array}` has unsupported dtype {descr}; supported: {supported}")]
    UnsupportedDtype {
        /// The archive.
        path: PathBuf,
        /// The array.
        array: String,
        /// The header's `descr`, as written.
        descr: String,
        /// The dtypes that are supported.
        supported: &'static str,
    },
    /// The header's shape and dtype do not account for the data's length.
    #[error(
        "{path}: array `{array}`: header says shape {shape:?} of {dtype} ({expected} bytes), \
         but the member holds {actual} data bytes"
    )]
    SizeMismatch {
        /// The archive.
        path: PathBuf,
        /// The array.
        array: String,
        /// The header's shape.
        shape: Vec<usize>,
        /// The element type.
        dtype: ElemType,
        /// Bytes the shape and dtype call for.
        expected: u64,
        /// Bytes the member holds.
        actual: u64,
    },
    /// A size in the file is impossible or cannot be held (an element count
    /// that overflows, a member claiming more than the file can expand to).
    #[error("{path}: array `{array}`: {detail}")]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// The array.
        array: String,
        /// Which size and why.
        detail: String,
    },
    /// Two members carry the same array name.
    #[error("{path}: array `{array}` appears more than once")]
    Duplicate {
        /// The archive.
        path: PathBuf,
        /// The repeated name.
        array: String,
    },
    /// An array's values cannot be converted as asked (a fractional label, a
    /// value out of range, a float where an integer is needed).
    #[error("array `{array}`: {detail}")]
    Convert {
        /// The array.
        array: String,
        /// The offending element and why.
        detail: String,
    },
    /// An array handed to the writer (or built in memory) is inconsistent.
    #[error("array `{array}`: {detail}")]
    Invalid {
        /// The array.
        array: String,
        /// What is inconsistent.
        detail: String,
    },
    /// Writing the archive failed; the destination was left as it was.
    #[error("writing {path}: {source}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The operating system's or zip writer's error.
        source: io::Error,
    },
}

/// Element types of the arrays this module reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElemType {
    /// IEEE half precision (`<f2`).
    F16,
    /// float32 (`<f4`).
    F32,
    /// float64 (`<f8`).
    F64,
    /// int8 (`|i1`).
    I8,
    /// int16 (`<i2`).
    I16,
    /// int32 (`<i4`).
    I32,
    /// int64 (`<i8`).
    I64,
    /// uint8 (`|u1`).
    U8,
    /// uint16 (`<u2`).
    U16,
    /// uint32 (`<u4`).
    U32,
    /// uint64 (`<u8`).
    U64,
    /// bool, one byte 0 or 1 (`|b1`).
    Bool,
}

/// The dtypes [`read_npz`] accepts, for error messages.
const SUPPORTED_DTYPES: &str = "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1, little- or big-endian";

impl ElemType {
    /// Every element type, in a fixed order.
    pub const ALL: [ElemType; 12] = [
        ElemType::F16,
        ElemType::F32,
        ElemType::F64,
        ElemType::I8,
        ElemType::I16,
        ElemType::I32,
        ElemType::I64,
        ElemType::U8,
        ElemType::U16,
        ElemType::U32,
        ElemType::U64,
        ElemType::Bool,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::I8 | ElemType::U8 | ElemType::Bool => 1,
            ElemType::F16 | ElemType::I16 | ElemType::U16 => 2,
            ElemType::F32 | ElemType::I32 | ElemType::U32 => 4,
            ElemType::F64 | ElemType::I64 | ElemType::U64 => 8,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, ElemType::F16 | ElemType::F32 | ElemType::F64)
    }

    /// The little-endian NumPy `descr` string (`<f4`, `|u1`, ...).
    pub fn descr(self) -> &'static str {
        match self {
            ElemType::F16 => "<f2",
            ElemType::F32 => "<f4",
            ElemType::F64 => "<f8",
            ElemType::I8 => "|i1",
            ElemType::I16 => "<i2",
            ElemType::I32 => "<i4",
            ElemType::I64 => "<i8",
            ElemType::U8 => "|u1",
            ElemType::U16 => "<u2",
            ElemType::U32 => "<u4",
            ElemType::U64 => "<u8",
            ElemType::Bool => "|b1",
        }
    }

    /// The type and whether its bytes are big-endian, from a `descr` string;
    /// `None` for anything unsupported.
    fn from_descr(descr: &str) -> Option<(ElemType, bool)> {
        let mut chars = descr.chars();
        let order = chars.next()?;
        let code = chars.as_str();
        let ty = match code {
            "f2" | "e" => ElemType::F16,
            "f4" | "f" => ElemType::F32,
            "f8" | "d" => ElemType::F64,
            "i1" | "b" => ElemType::I8,
            "i2" | "h" => ElemType::I16,
            "i4" => ElemType::I32,
            "i8" | "q" => ElemType::I64,
            "u1" | "B" => ElemType::U8,
            "u2" | "H" => ElemType::U16,
            "u4" => ElemType::U32,
            "u8" | "Q" => ElemType::U64,
            "b1" | "?" => ElemType::Bool,
            _ => return None,
        };
        // `=` (native) never appears in a file numpy wrote; its meaning would
        // depend on the writer's machine, so it is refused.
        match (order, ty.size()) {
            ('<', _) => Some((ty, false)),
            ('>', 1) | ('|', 1) => Some((ty, false)),
            ('>', _) => Some((ty, true)),
            _ => None,
        }
    }
}

impl std::fmt::Display for ElemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ElemType::F16 => "float16",
            ElemType::F32 => "float32",
            ElemType::F64 => "float64",
            ElemType::I8 => "int8",
            ElemType::I16 => "int16",
            ElemType::I32 => "int32",
            ElemType::I64 => "int64",
            ElemType::U8 => "uint8",
            ElemType::U16 => "uint16",
            ElemType::U32 => "uint32",
            ElemType::U64 => "uint64",
            ElemType::Bool => "bool",
        };
        f.write_str(name)
    }
}

/// One named array: C order, little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The name (the zip member's name without `.npy`).
    pub name: String,
    /// The element type.
    pub dtype: ElemType,
    /// The shape; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements, little-endian, `element_count() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

/// A whole `.npz` archive, arrays in the order of the archive's directory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Npz {
    /// The arrays; names are unique.
    pub arrays: Vec<Array>,
}

impl Npz {
    /// The array called `name`.
    pub fn get(&self, name: &str) -> Option<&Array> {
        self.arrays.iter().find(|a| a.name == name)
    }

    /// The arrays' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.arrays.iter().map(|a| a.name.as_str())
    }
}

/// Elements in `shape`, or `None` when the product overflows.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Copies a fixed-size chunk (from `chunks_exact`, so the length is right).
fn chunk<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// IEEE half to single precision, exactly.
fn f16_to_f32(bits: u16) -> f32 {
    let negative = bits & 0x8000 != 0;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa * 2^-24, exact in f32.
        0 => mantissa as f32 * f32::from_bits(0x3380_0000),
        31 => f32::from_bits(0x7f80_0000 | (mantissa << 13)),
        e => f32::from_bits(((e + 112) << 23) | (mantissa << 13)),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// One element widened to the value it stands for.
enum Scalar {
    Float(f64),
    Signed(i64),
    Unsigned(u64),
}

impl Array {
    /// An array from its parts, checking that the data's length fits the
    /// shape and dtype.
    pub fn new(name: impl Into<String>, dtype: ElemType, shape: Vec<usize>, data: Vec<u8>) -> Result<Array, DataError> {
        let array = Array { name: name.into(), dtype, shape, data };
        array.check()?;
        Ok(array)
    }

    /// A float32 array.
    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Result<Array, DataError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Array::new(name, ElemType::F32, shape, data)
    }

    /// An int64 array.
    pub fn from_i64(name: impl Into<String>, shape: Vec<usize>, values: &[i64]) -> Result<Array, DataError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Array::new(name, ElemType::I64, shape, data)
    }

    /// Number of elements (1 for a scalar), or `None` when the shape's product
    /// overflows.
    pub fn element_count(&self) -> Option<usize> {
        element_count(&self.shape)
    }

    /// An error unless `data` holds exactly the elements the shape calls for.
    pub fn check(&self) -> Result<(), DataError> {
        let expected =
            self.element_count().and_then(|n| n.checked_mul(self.dtype.size())).ok_or_else(|| DataError::Invalid {
                array: self.name.clone(),
                detail: format!("shape {:?} has more elements than memory can hold", self.shape),
            })?;
        if expected != self.data.len() {
            return Err(DataError::Invalid {
                array: self.name.clone(),
                detail: format!(
                    "shape {:?} of {} needs {expected} bytes, the data has {}",
                    self.shape,
                    self.dtype,
                    self.data.len()
                ),
            });
        }
        Ok(())
    }

    /// The elements as the values they stand for.
    fn scalars(&self) -> Result<impl Iterator<Item = Scalar> + '_, DataError> {
        self.check()?;
        let dtype = self.dtype;
        Ok(self.data.chunks_exact(dtype.size()).map(move |c| match dtype {
            ElemType::F16 => Scalar::Float(f64::from(f16_to_f32(u16::from_le_bytes(chunk(c))))),
            ElemType::F32 => Scalar::Float(f64::from(f32::from_le_bytes(chunk(c)))),
            ElemType::F64 => Scalar::Float(f64::from_le_bytes(chunk(c))),
            ElemType::I8 => Scalar::Signed(i64::from(i8::from_le_bytes(chunk(c)))),
            ElemType::I16 => Scalar::Signed(i64::from(i16::from_le_bytes(chunk(c)))),
            ElemType::I32 => Scalar::Signed(i64::from(i32::from_le_bytes(chunk(c)))),
            ElemType::I64 => Scalar::Signed(i64::from_le_bytes(chunk(c))),
            ElemType::U8 => Scalar::Unsigned(u64::from(u8::from_le_bytes(chunk(c)))),
            ElemType::U16 => Scalar::Unsigned(u64::from(u16::from_le_bytes(chunk(c)))),
            ElemType::U32 => Scalar::Unsigned(u64::from(u32::from_le_bytes(chunk(c)))),
            ElemType::U64 => Scalar::Unsigned(u64::from_le_bytes(chunk(c))),
            ElemType::Bool => Scalar::Unsigned(u64::from(c.first().is_some_and(|&b| b != 0))),
        }))
    }

    /// The elements as float32, from any dtype (float64 and large integers
    /// round to the nearest float32; bool is 0 or 1).
    pub fn to_f32(&self) -> Result<Vec<f32>, DataError> {
        // f32 directly: the common case, and exact bit patterns (NaN payloads).
        if self.dtype == ElemType::F32 {
            self.check()?;
            return Ok(self.data.chunks_exact(4).map(|c| f32::from_le_bytes(chunk(c))).collect());
        }
        Ok(self
            .scalars()?
            .map(|s| match s {
                Scalar::Float(v) => v as f32,
                Scalar::Signed(v) => v as f32,
                Scalar::Unsigned(v) => v as f32,
            })
            .collect())
    }

    /// The elements as int64, from integer and bool dtypes, and from float
    /// dtypes whose values are all integral (labels saved as floats). A
    /// fractional, non-finite or out-of-range value is an error naming the
    /// array and the element.
    pub fn to_i64(&self) -> Result<Vec<i64>, DataError> {
        // Out of range of i64: -2^63 is exact in f64, 2^63 is the first value over.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        self.scalars()?
            .enumerate()
            .map(|(index, s)| match s {
                Scalar::Signed(v) => Ok(v),
                Scalar::Unsigned(v) => i64::try_from(v).map_err(|_| DataError::Convert {
                    array: self.name.clone(),
                    detail: format!("element {index} = {v} does not fit in int64"),
                }),
                Scalar::Float(v) if v.is_finite() && v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) => Ok(v as i64),
                Scalar::Float(v) => Err(DataError::Convert {
                    array: self.name.clone(),
                    detail: format!("element {index} = {v} of {} is not an integer in int64's range", self.dtype),
                }),
            })
            .collect()
    }
}

/// Reads every array of a NumPy `.npz` archive.
pub fn read_npz(path: &Path) -> Result<Npz, DataError> {
    let io_err = |source| DataError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    read_npz_from(path, BufReader::new(file), len)
}

/// [`read_npz`] on any seekable reader holding `len` bytes; `path` only names
/// the archive in errors.
fn read_npz_from<R: Read + Seek>(path: &Path, mut reader: R, len: u64) -> Result<Npz, DataError> {
    // The zip crate keeps the last of several members with one name, and
    // reserves memory for as many entries as the directory claims; look at
    // the directory first.
    match scan_directory(&mut reader, len) {
        Some(DirectoryScan::Duplicate(name)) => {
            let array = name.strip_suffix(".npy").unwrap_or(&name).to_owned();
            return Err(DataError::Duplicate { path: path.to_owned(), array });
        }
        Some(DirectoryScan::ImplausibleCount(entries)) => {
            return Err(DataError::NotZip {
                path: path.to_owned(),
                detail: format!("the directory claims {entries} entries, more than {len} bytes can hold"),
            });
        }
        None => {}
    }
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| DataError::NotZip { path: path.to_owned(), detail: e.to_string() })?;
    let mut arrays = Vec::with_capacity(archive.len().min(1024));
    let mut names = HashSet::new();
    for index in 0..archive.len() {
        let array = read_member(path, &mut archive, index, len)?;
        if !names.insert(array.name.clone()) {
            return Err(DataError::Duplicate { path: path.to_owned(), array: array.name });
        }
        arrays.push(array);
    }
    Ok(Npz { arrays })
}

/// What the look at the central directory found.
enum DirectoryScan {
    /// A member name listed twice.
    Duplicate(String),
    /// More entries than the file has room for (each takes 46 bytes at
    /// least); refused before the zip reader reserves memory for them.
    ImplausibleCount(u64),
}

/// Reads the archive's central directory for problems the zip reader does
/// not report. `None` when it finds none, or when the directory is not the
/// plain layout numpy writes (the zip reader then reports what it finds).
fn scan_directory<R: Read + Seek>(reader: &mut R, len: u64) -> Option<DirectoryScan> {
    let le16 = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_le_bytes(chunk(s)));
    let le32 = |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_le_bytes(chunk(s)));
    let le64 = |b: &[u8], at: usize| b.get(at..at + 8).map(|s| u64::from_le_bytes(chunk(s)));
    let mut read_at = |offset: u64, size: u64| -> Option<Vec<u8>> {
        if offset.checked_add(size)? > len {
            return None;
        }
        reader.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = vec![0u8; usize::try_from(size).ok()?];
        reader.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    // The end-of-central-directory record: 22 bytes plus a comment of at most 64 KiB.
    let tail_len = len.min(22 + 0xffff);
    let tail_start = len - tail_len;
    let tail = read_at(tail_start, tail_len)?;
    let eocd = (0..tail.len().saturating_sub(21)).rev().find(|&i| tail.get(i..i + 4) == Some(b"PK\x05\x06"))?;
    let mut entries = u64::from(le16(&tail, eocd + 10)?);
    let mut cd_size = u64::from(le32(&tail, eocd + 12)?);
    let mut cd_offset = u64::from(le32(&tail, eocd + 16)?);
    if entries > len / 46 {
        return Some(DirectoryScan::ImplausibleCount(entries));
    }
    if cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff || entries == 0xffff {
        // Zip64: the locator sits just before the record and points at the zip64 record.
        let locator = eocd.checked_sub(20)?;
        if tail.get(locator..locator + 4) != Some(b"PK\x06\x07") {
            return None;
        }
        let record = read_at(le64(&tail, locator + 8)?, 56)?;
        if record.get(0..4) != Some(b"PK\x06\x06") {
            return None;
        }
        entries = le64(&record, 32)?;
        cd_size = le64(&record, 40)?;
        cd_offset = le64(&record, 48)?;
        if entries > len / 46 {
            return Some(DirectoryScan::ImplausibleCount(entries));
        }
    }
    if cd_size > MAX_CENTRAL_DIRECTORY {
        return None;
    }
    let directory = read_at(cd_offset, cd_size)?;
    let mut seen = HashSet::new();
    let mut at = 0usize;
    while directory.get(at..at + 4) == Some(b"PK\x01\x02") {
        let name_len = usize::from(le16(&directory, at + 28)?);
        let extra_len = usize::from(le16(&directory, at + 30)?);
        let comment_len = usize::from(le16(&directory, at + 32)?);
        let name = directory.get(at + 46..at + 46 + name_len)?;
        if !seen.insert(name) {
            return Some(DirectoryScan::Duplicate(String::from_utf8_lossy(name).into_owned()));
        }
        at = at + 46 + name_len + extra_len + comment_len;
    }
    None
}

/// Reads member `index` as an array.
fn read_member<R: Read + Seek>(
    path: &Path,
    archive: &mut zip::ZipArchive<R>,
    index: usize,
    file_len: u64,
) -> Result<Array, DataError> {
    let entry_err =
        |entry: &str, detail: String| DataError::Entry { path: path.to_owned(), entry: entry.to_owned(), detail };
    let mut member = archive.by_index(index).map_err(|e| match e {
        zip::result::ZipError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            DataError::NotZip { path: path.to_owned(), detail: format!("member {index} is truncated: {e}") }
        }
        e => entry_err(&format!("#{index}"), e.to_string()),
    })?;
    let entry = member.name().to_owned();
    if member.is_dir() {
        return Err(entry_err(&entry, "is a directory, not an .npy array".into()));
    }
    let Some(name) = entry.strip_suffix(".npy") else {
        return Err(entry_err(&entry, "is not an .npy array (the name does not end in .npy)".into()));
    };
    let name = name.to_owned();
    let too_large = |detail: String| DataError::TooLarge { path: path.to_owned(), array: name.clone(), detail };
    let declared = member.size();
    let compressed = member.compressed_size();
    match member.compression() {
        zip::CompressionMethod::Stored => {
            if declared != compressed {
                return Err(DataError::Corrupt {
                    path: path.to_owned(),
                    array: name,
                    detail: format!("stored member lists {declared} bytes but {compressed} stored"),
                });
            }
        }
        zip::CompressionMethod::Deflated => {
            if declared > compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024) {
                return Err(too_large(format!(
                    "claims {declared} bytes from {compressed} deflated bytes, more than deflate can expand to"
                )));
            }
        }
        method => return Err(entry_err(&entry, format!("compression {method} is not supported (stored or deflate)"))),
    }
    if compressed > file_len {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            array: name,
            detail: format!("member claims {compressed} bytes, the whole file has {file_len}"),
        });
    }
    let read_err = |e: io::Error, what: &str| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            DataError::Truncated { path: path.to_owned(), array: name.clone(), detail: format!("{what} ends early") }
        }
        _ => DataError::Corrupt { path: path.to_owned(), array: name.clone(), detail: format!("{what}: {e}") },
    };

    let mut preamble = [0u8; 8];
    member.read_exact(&mut preamble).map_err(|e| read_err(e, "the .npy header"))?;
    let header_err = |detail: String| DataError::Header { path: path.to_owned(), array: name.clone(), detail };
    if preamble.get(..6) != Some(MAGIC.as_slice()) {
        return Err(header_err("no .npy magic string; not an array numpy wrote".into()));
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let header_len = match major {
        1 => {
            let mut b = [0u8; 2];
            member.read_exact(&mut b).map_err(|e| read_err(e, "the .npy header"))?;
            u64::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            member.read_exact(&mut b).map_err(|e| read_err(e, "the .npy header"))?;
            u64::from(u32::from_le_bytes(b))
        }
        _ => return Err(header_err(format!("format version {major}.{minor} (readable: 1.0, 2.0, 3.0)"))),
    };
    let preamble_len = if major == 1 { 10 } else { 12 };
    if header_len > MAX_HEADER_LEN || preamble_len + header_len > declared {
        return Err(header_err(format!(
            "header length {header_len} exceeds the member ({declared} bytes) or the {MAX_HEADER_LEN}-byte limit"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    member.read_exact(&mut header).map_err(|e| read_err(e, "the .npy header"))?;
    // Version 1 and 2 headers are latin-1 (in practice ASCII), version 3 UTF-8.
    let text: String = if major == 3 {
        String::from_utf8(header).map_err(|_| header_err("version 3.0 header is not UTF-8".into()))?
    } else {
        header.iter().map(|&b| char::from(b)).collect()
    };
    let parsed = parse_header(&text).map_err(header_err)?;
    let Some((dtype, big_endian)) = ElemType::from_descr(&parsed.descr) else {
        return Err(DataError::UnsupportedDtype {
            path: path.to_owned(),
            array: name,
            descr: parsed.descr,
            supported: SUPPORTED_DTYPES,
        });
    };
    let shape = parsed.shape;
    let expected = element_count(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| too_large(format!("shape {shape:?} of {dtype} has more elements than memory can hold")))?;
    let actual = declared - preamble_len - header_len;
    if expected != actual {
        return Err(DataError::SizeMismatch { path: path.to_owned(), array: name, shape, dtype, expected, actual });
    }
    // `expected` is at most the member's size, which is bounded by the file
    // (stored) or the deflate ratio (deflated); the buffer still grows only
    // with the bytes that arrive.
    let expected_len = usize::try_from(expected).map_err(|_| too_large(format!("{expected} bytes")))?;
    let mut data = Vec::new();
    data.try_reserve_exact(expected_len.min(MAX_INITIAL_CAPACITY))
        .map_err(|_| too_large(format!("cannot allocate {expected} bytes")))?;
    // One byte over the limit shows a member longer than it claims; reading to
    // the end also runs the zip reader's checksum test.
    (&mut member).take(expected + 1).read_to_end(&mut data).map_err(|e| read_err(e, "the data"))?;
    if data.len() as u64 != expected {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            array: name,
            detail: format!("expected {expected} data bytes, found {}", data.len()),
        });
    }
    if big_endian {
        for element in data.chunks_exact_mut(dtype.size()) {
            element.reverse();
        }
    }
    // Empty arrays need no reordering (and their other dimensions' products may overflow).
    if parsed.fortran_order && shape.len() > 1 && !data.is_empty() {
        data = fortran_to_c(&data, &shape, dtype.size());
    }
    Ok(Array { name, dtype, shape, data })
}

/// Reorders Fortran-order (first index fastest) elements into C order.
fn fortran_to_c(data: &[u8], shape: &[usize], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    // C-order strides, in elements.
    let mut strides = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut target = 0usize;
    for element in data.chunks_exact(size) {
        out[target * size..(target + 1) * size].copy_from_slice(element);
        // Advance the Fortran-order counter: axis 0 fastest.
        for axis in 0..shape.len() {
            index[axis] += 1;
            target += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            target -= strides[axis] * shape[axis];
            index[axis] = 0;
        }
    }
    out
}

/// The three fields of an `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// The subset of Python literals an `.npy` header uses.
#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

/// Parses the header's dict literal, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> Result<Header, String> {
    let mut parser = LiteralParser { bytes: text.as_bytes(), at: 0 };
    let literal = parser.value(0)?;
    parser.skip_space();
    if parser.at != parser.bytes.len() {
        return Err(format!("unexpected text after the header dict at byte {}", parser.at));
    }
    let Literal::Dict(entries) = literal else {
        return Err("the header is not a dict".into());
    };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in entries {
        let Literal::Str(key) = key else {
            return Err("a header key is not a string".into());
        };
        match (key.as_str(), value) {
            ("descr", Literal::Str(s)) => descr = Some(s),
            // A list (structured record) or other descr: shown as unsupported.
            ("descr", other) => descr = Some(format!("{other:?}")),
            ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
            ("shape", Literal::Seq(dims)) => {
                let dims = dims
                    .into_iter()
                    .map(|d| match d {
                        Literal::Int(n) => usize::try_from(n).map_err(|_| format!("dimension {n} too large")),
                        other => Err(format!("shape entry {other:?} is not a non-negative integer")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                shape = Some(dims);
            }
            (key @ ("fortran_order" | "shape"), other) => return Err(format!("`{key}` has the wrong type: {other:?}")),
            (key, _) => return Err(format!("unexpected key `{key}` (numpy writes descr, fortran_order, shape)")),
        }
    }
    match (descr, fortran_order, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header { descr, fortran_order, shape }),
        _ => Err("missing one of the keys descr, fortran_order, shape".into()),
    }
}

/// A recursive-descent parser over the header bytes, depth-bounded.
struct LiteralParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl LiteralParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal, String> {
        if depth > MAX_LITERAL_DEPTH {
            return Err("header nests too deeply".into());
        }
        self.skip_space();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_space();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        return Ok(Literal::Dict(entries));
                    }
                    let key = self.value(depth + 1)?;
                    self.skip_space();
                    if self.peek() != Some(b':') {
                        return Err(format!("expected `:` at byte {}", self.at));
                    }
                    self.at += 1;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                    if !self.separator(b'}')? {
                        self.at += 1;
                        return Ok(Literal::Dict(entries));
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_space();
                    if self.peek() == Some(close) {
                        self.at += 1;
                        return Ok(Literal::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if !self.separator(close)? {
                        self.at += 1;
                        return Ok(Literal::Seq(items));
                    }
                }
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.at += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err("unterminated string".into()),
                        Some(b) if b == quote => {
                            self.at += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let escaped = self.bytes.get(self.at + 1).copied().ok_or("unterminated string")?;
                            out.push(escaped);
                            self.at += 2;
                        }
                        Some(b) => {
                            out.push(b);
                            self.at += 1;
                        }
                    }
                }
                String::from_utf8(out).map(Literal::Str).map_err(|_| "a string is not valid text".into())
            }
            Some(b'0'..=b'9') => {
                let mut n: u64 = 0;
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d - b'0')))
                        .ok_or("an integer in the header overflows")?;
                    self.at += 1;
                }
                // Python 2 wrote long integers as `3L`.
                if self.peek() == Some(b'L') {
                    self.at += 1;
                }
                Ok(Literal::Int(n))
            }
            Some(b'-') => Err(format!("negative number at byte {}", self.at)),
            Some(_) => {
                for (word, literal) in
                    [("True", Literal::Bool(true)), ("False", Literal::Bool(false)), ("None", Literal::None)]
                {
                    if self.bytes.get(self.at..self.at + word.len()) == Some(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(literal);
                    }
                }
                Err(format!("unexpected character at byte {}", self.at))
            }
            None => Err("the header ends early".into()),
        }
    }

    /// After an item: consumes a `,` and returns true, or finds `close` (left
    /// for the caller to consume) and returns false.
    fn separator(&mut self, close: u8) -> Result<bool, String> {
        self.skip_space();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(true)
            }
            Some(b) if b == close => Ok(false),
            _ => Err(format!("expected `,` or `{}` at byte {}", char::from(close), self.at)),
        }
    }
}

/// The `.npy` bytes of an array (format 1.0, or 2.0 when the header needs it),
/// header padded to 64 bytes as numpy does.
fn npy_bytes(array: &Array) -> Vec<u8> {
    let shape = match array.shape.as_slice() {
        [one] => format!("({one},)"),
        dims => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", array.dtype.descr());
    let (version, preamble) = if dict.len() + 1 + 10 <= 0xffff { (1u8, 10) } else { (2u8, 12) };
    let padding = (64 - (preamble + dict.len() + 1) % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(preamble + header_len + array.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + padding, b' ');
    out.push(b'\n');
    out.extend_from_slice(&array.data);
    out
}

/// Writes `arrays` as an uncompressed `.npz` that `numpy.load` reads,
/// atomically: into a temporary file beside `path`, synced, then renamed over
/// it, so a failure leaves any earlier file at `path` untouched.
pub fn write_npz(path: &Path, arrays: &[Array]) -> Result<(), DataError> {
    let mut names = HashSet::new();
    for array in arrays {
        array.check()?;
        if array.name.is_empty() {
            return Err(DataError::Invalid { array: String::new(), detail: "an array needs a name".into() });
        }
        if !names.insert(array.name.as_str()) {
            return Err(DataError::Invalid { array: array.name.clone(), detail: "the name is used twice".into() });
        }
    }
    let write_err = |source: io::Error| DataError::Write { path: path.to_owned(), source };
    let zip_err = |e: zip::result::ZipError| write_err(io::Error::other(e));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".npz-").suffix(".tmp").tempfile_in(dir).map_err(write_err)?;
    {
        let mut zip = zip::ZipWriter::new(BufWriter::new(tmp.as_file_mut()));
        for array in arrays {
            let bytes = npy_bytes(array);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
            zip.start_file(format!("{}.npy", array.name), options).map_err(zip_err)?;
            zip.write_all(&bytes).map_err(write_err)?;
        }
        let mut out = zip.finish().map_err(zip_err)?;
        out.flush().map_err(write_err)?;
    }
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    // The rename is durable once the directory is synced; not every platform
    // can open a directory, so this part is best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data/test").join(name)
    }

    fn read(name: &str) -> Result<Npz, DataError> {
        read_npz(&fixture(name))
    }

    /// The `.npy` bytes of a hand-written header and data (format 1.0).
    fn raw_npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A stored zip of the given members, written by the zip crate.
    fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn read_bytes(bytes: &[u8]) -> Result<Npz, DataError> {
        read_npz_from(Path::new("mem.npz"), Cursor::new(bytes), bytes.len() as u64)
    }

    /// A one-member zip written by hand, so that its size fields can lie.
    fn raw_zip(name: &str, method: u16, crc: u32, payload: &[u8], uncompressed: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let fields = |out: &mut Vec<u8>| {
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 4]); // time, date
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&uncompressed.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00");
        fields(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(payload);
        let cd_start = out.len() as u32;
        out.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00");
        fields(&mut out);
        out.extend_from_slice(&[0; 10]); // comment len, disk, internal attr, external attr
        out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        out.extend_from_slice(name.as_bytes());
        let cd_len = out.len() as u32 - cd_start;
        out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
        out.extend_from_slice(&cd_len.to_le_bytes());
        out.extend_from_slice(&cd_start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_every_supported_dtype_from_savez() {
        let npz = read("basic.npz").unwrap();
        let names: Vec<_> = npz.names().collect();
        assert_eq!(
            names,
            ["x", "labels", "f64", "f16", "i32", "i16", "i8", "u8", "u16", "u32", "u64", "mask", "scalar", "empty"]
        );
        let x = npz.get("x").unwrap();
        assert_eq!((x.dtype, x.shape.as_slice()), (ElemType::F32, [3, 4].as_slice()));
        assert_eq!(x.to_f32().unwrap(), (0..12).map(|i| i as f32 / 4.0).collect::<Vec<_>>());
        assert_eq!(npz.get("labels").unwrap().to_i64().unwrap(), [0, 2, 1]);
        assert_eq!(npz.get("f64").unwrap().to_f32().unwrap(), [1.5, -2.25, f32::INFINITY, -0.0]);
        assert_eq!(npz.get("f16").unwrap().to_f32().unwrap(), [0.5, -1.0, 65504.0]);
        assert_eq!(npz.get("i32").unwrap().to_i64().unwrap(), [-7, 2147483647]);
        assert_eq!(npz.get("i16").unwrap().to_i64().unwrap(), [-32768, 5]);
        assert_eq!(npz.get("i8").unwrap().to_i64().unwrap(), [-128, 127]);
        assert_eq!(npz.get("u8").unwrap().to_i64().unwrap(), [0, 255, 7]);
        assert_eq!(npz.get("u16").unwrap().to_f32().unwrap(), [65535.0]);
        assert_eq!(npz.get("u32").unwrap().to_i64().unwrap(), [4_000_000_000]);
        assert_eq!(npz.get("mask").unwrap().to_i64().unwrap(), [1, 0, 1, 1]);
        assert_eq!(npz.get("mask").unwrap().dtype, ElemType::Bool);
        let scalar = npz.get("scalar").unwrap();
        assert!(scalar.shape.is_empty());
        assert_eq!(scalar.to_f32().unwrap(), [3.25]);
        let empty = npz.get("empty").unwrap();
        assert_eq!((empty.shape.as_slice(), empty.data.len()), ([0, 3].as_slice(), 0));
        // u64 above i64::MAX: an error naming the array and element.
        let err = npz.get("u64").unwrap().to_i64().unwrap_err().to_string();
        assert!(err.contains("`u64`") && err.contains("element 0"), "{err}");
    }

    #[test]
    fn reads_savez_compressed() {
        let npz = read("compressed.npz").unwrap();
        let big = npz.get("big").unwrap();
        assert_eq!(big.shape, [64, 8]);
        let expected: Vec<f32> = (0..512).map(|i| (i % 8) as f32).collect();
        assert_eq!(big.to_f32().unwrap(), expected);
        assert_eq!(npz.get("labels").unwrap().to_i64().unwrap(), [3, 1, 4, 1, 5]);
    }

    #[test]
    fn fortran_order_is_transposed_and_big_endian_swapped() {
        let npz = read("layout.npz").unwrap();
        let f = npz.get("fortran").unwrap();
        assert_eq!(f.shape, [2, 3, 4]);
        assert_eq!(f.to_f32().unwrap(), (0..24).map(|i| i as f32).collect::<Vec<_>>());
        let b = npz.get("bigend").unwrap();
        assert_eq!((b.dtype, b.shape.as_slice()), (ElemType::I32, [2, 3].as_slice()));
        assert_eq!(b.to_i64().unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(npz.get("bigf64").unwrap().to_f32().unwrap(), [1.5, -3.0]);
        // The data really is little-endian now, not just converted on the way out.
        assert_eq!(&b.data[4..8], &1i32.to_le_bytes());
    }

    #[test]
    fn float_labels_convert_only_when_integral() {
        let npz = read("float_labels.npz").unwrap();
        assert_eq!(npz.get("integral").unwrap().to_i64().unwrap(), [0, 2, 1]);
        let err = npz.get("fractional").unwrap().to_i64().unwrap_err().to_string();
        assert!(err.contains("`fractional`") && err.contains("element 1 = 0.5"), "{err}");
        let nan = Array::from_f32("nan", vec![1], &[f32::NAN]).unwrap();
        assert!(nan.to_i64().is_err());
        let huge = Array::from_f32("huge", vec![1], &[1e19]).unwrap();
        assert!(huge.to_i64().is_err());
    }

    #[test]
    fn header_versions_2_and_3() {
        let npz = read("versions.npz").unwrap();
        assert_eq!(npz.get("v2").unwrap().to_f32().unwrap(), [1.0, 2.0]);
        let v3 = npz.get("v3").unwrap();
        assert_eq!((v3.shape.as_slice(), v3.to_i64().unwrap()), ([1, 2].as_slice(), vec![5, 6]));
    }

    #[test]
    fn unsupported_dtypes_are_named() {
        let err = read("unsupported.npz").unwrap_err();
        let DataError::UnsupportedDtype { array, descr, .. } = &err else { panic!("{err}") };
        assert_eq!((array.as_str(), descr.as_str()), ("text", "<U2"));
        let msg = err.to_string();
        assert!(msg.contains("unsupported.npz") && msg.contains("`text`"), "{msg}");
        // A structured record (descr is a list).
        let record = raw_npy("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }\n", &[0; 4]);
        let err = read_bytes(&zip_of(&[("r.npy", record)])).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedDtype { ref array, .. } if array == "r"), "{err}");
    }

    #[test]
    fn duplicate_names_are_an_error() {
        let err = read("duplicate.npz").unwrap_err();
        assert!(matches!(err, DataError::Duplicate { ref array, .. } if array == "a"), "{err}");
        assert!(err.to_string().contains("duplicate.npz"));
    }

    #[test]
    fn not_a_zip() {
        let err = read_bytes(b"this is a text file, not an archive").unwrap_err();
        assert!(matches!(err, DataError::NotZip { .. }), "{err}");
        assert!(read_bytes(b"").is_err());
        let missing = read("no-such-file.npz").unwrap_err();
        assert!(matches!(missing, DataError::Io { .. }) && missing.to_string().contains("no-such-file.npz"));
    }

    #[test]
    fn members_that_are_not_arrays() {
        let err = read_bytes(&zip_of(&[("readme.txt", b"hi".to_vec())])).unwrap_err();
        assert!(matches!(err, DataError::Entry { ref entry, .. } if entry == "readme.txt"), "{err}");
        let err = read_bytes(&zip_of(&[("a.npy", b"not numpy".to_vec())])).unwrap_err();
        assert!(matches!(err, DataError::Header { ref array, .. } if array == "a"), "{err}");
    }

    #[test]
    fn bad_headers() {
        let cases = [
            ("{'descr': '<f4', 'fortran_order': False, }", "missing"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "negative"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", "wrong type"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", "unexpected key"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", "overflows"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "expected"),
            ("[1, 2]", "not a dict"),
            (&format!("{}{}", "(".repeat(100), ")".repeat(100)), "deeply"),
        ];
        for (header, needle) in cases {
            let bytes = zip_of(&[("h.npy", raw_npy(header, &[0; 4]))]);
            let err = read_bytes(&bytes).unwrap_err();
            assert!(matches!(err, DataError::Header { .. }), "{header}: {err}");
            assert!(err.to_string().contains(needle), "{header}: {err}");
        }
        // Version 9.0.
        let mut v9 = raw_npy("{}", &[]);
        v9[6] = 9;
        let err = read_bytes(&zip_of(&[("v.npy", v9)])).unwrap_err();
        assert!(err.to_string().contains("version 9.0"), "{err}");
        // Python 2's `3L` integers and a double-quoted descr still parse.
        let old = raw_npy("{\"descr\": \"<f4\", 'fortran_order': False, 'shape': (1L,), }", &[0, 0, 128, 63]);
        let npz = read_bytes(&zip_of(&[("old.npy", old)])).unwrap();
        assert_eq!(npz.arrays[0].to_f32().unwrap(), [1.0]);
    }

    #[test]
    fn hostile_sizes() {
        // A shape whose element count overflows.
        let npy = raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", &[]);
        let err = read_bytes(&zip_of(&[("o.npy", npy)])).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { ref array, .. } if array == "o"), "{err}");
        // A header claiming a billion elements over 12 bytes of data: refused
        // from the sizes, before any allocation.
        let npy = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }", &[0; 12]);
        let err = read_bytes(&zip_of(&[("big.npy", npy)])).unwrap_err();
        let DataError::SizeMismatch { expected, actual, .. } = err else { panic!("{err}") };
        assert_eq!((expected, actual), (4_000_000_000, 12));
        // Empty, with other dimensions whose product overflows, in Fortran order.
        let npy = raw_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 4294967296, 4294967296), }", &[]);
        let npz = read_bytes(&zip_of(&[("z.npy", npy)])).unwrap();
        assert_eq!(npz.arrays[0].shape, [0, 1 << 32, 1 << 32]);
        // Fewer elements than data.
        let npy = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &[0; 12]);
        assert!(matches!(read_bytes(&zip_of(&[("s.npy", npy)])), Err(DataError::SizeMismatch { .. })));
        // A deflated member claiming 4 GB from a few bytes.
        let payload = [3u8, 0]; // an empty deflate stream
        let err = read_bytes(&raw_zip("d.npy", 8, 0, &payload, u32::MAX)).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { ref array, .. } if array == "d"), "{err}");
        // An end-of-directory record claiming 65 534 entries in a tiny file.
        let mut bytes = raw_zip("c.npy", 0, 0, b"", 0);
        let at = bytes.len() - 12;
        bytes[at..at + 2].copy_from_slice(&0xfffeu16.to_le_bytes());
        let err = read_bytes(&bytes).unwrap_err();
        assert!(matches!(err, DataError::NotZip { .. }) && err.to_string().contains("65534 entries"), "{err}");
        // A stored member claiming more bytes than the file has.
        let err = read_bytes(&raw_zip("t.npy", 0, 0, b"\x93NUMPY", 1 << 30)).unwrap_err();
        assert!(
            matches!(err, DataError::Corrupt { .. } | DataError::Truncated { .. } | DataError::NotZip { .. }),
            "{err}"
        );
    }

    #[test]
    fn corrupt_deflate_and_checksum() {
        let mut bytes = std::fs::read(fixture("compressed.npz")).unwrap();
        // Damage the middle of the first member's deflate stream.
        let start = 30 + "big.npy".len() + 40;
        for b in &mut bytes[start..start + 8] {
            *b ^= 0x5a;
        }
        let err = read_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, DataError::Corrupt { ref array, .. } | DataError::Truncated { ref array, .. } | DataError::Header { ref array, .. } if array == "big"),
            "{err}"
        );
        // A flipped data byte in a stored member: the zip checksum catches it.
        let mut bytes = std::fs::read(fixture("basic.npz")).unwrap();
        let at = bytes.windows(4).position(|w| w == [0, 0, 0x80, 0x3e]).unwrap(); // x[1] = 0.25
        bytes[at + 3] ^= 1;
        let err = read_bytes(&bytes).unwrap_err();
        assert!(matches!(err, DataError::Corrupt { ref array, .. } if array == "x"), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    /// Truncations at every length and random byte flips of real archives:
    /// each read returns Ok or Err, never panics, and what it returns is
    /// consistent.
    #[test]
    fn truncations_and_byte_flips_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for name in ["basic.npz", "compressed.npz", "layout.npz"] {
            let original = std::fs::read(fixture(name)).unwrap();
            assert!(read_bytes(&original).is_ok());
            let mut errors = 0;
            for len in 0..original.len() {
                match read_bytes(&original[..len]) {
                    Ok(npz) => npz.arrays.iter().for_each(|a| a.check().unwrap()),
                    Err(_) => errors += 1,
                }
            }
            // Every strict prefix loses the end-of-directory record.
            assert_eq!(errors, original.len(), "{name}");
            for _ in 0..1500 {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (next() % 8);
                }
                if let Ok(npz) = read_bytes(&bytes) {
                    npz.arrays.iter().for_each(|a| a.check().unwrap());
                }
            }
        }
    }

    /// The same inside a valid zip (fresh checksums), so that the `.npy`
    /// parser itself sees every prefix and random damage of real members.
    #[test]
    fn damaged_npy_members_never_panic() {
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut archive = zip::ZipArchive::new(File::open(fixture("basic.npz")).unwrap()).unwrap();
        let mut errors = 0;
        for index in 0..archive.len() {
            let mut member = archive.by_index(index).unwrap();
            let name = member.name().to_owned();
            let mut npy = Vec::new();
            member.read_to_end(&mut npy).unwrap();
            for len in 0..npy.len() {
                let result = read_bytes(&zip_of(&[(name.as_str(), npy[..len].to_vec())]));
                assert!(result.is_err(), "{name} cut to {len} bytes was read");
                errors += 1;
            }
            for _ in 0..200 {
                let mut bytes = npy.clone();
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly in the header, where the parser works.
                let at = (state % bytes.len().min(128) as u64) as usize;
                bytes[at] = (state >> 32) as u8;
                if let Ok(npz) = read_bytes(&zip_of(&[(name.as_str(), bytes)])) {
                    npz.arrays.iter().for_each(|a| a.check().unwrap());
                }
            }
        }
        assert!(errors > 1000, "{errors}");
    }

    #[test]
    fn write_round_trips_and_numpy_layout() {
        let dir = tempfile::tempdir().unwrap();
        let npz = read("basic.npz").unwrap();
        let out = dir.path().join("out.npz");
        write_npz(&out, &npz.arrays).unwrap();
        assert_eq!(read_npz(&out).unwrap(), npz);
        // Headers are padded so the data starts 64-byte aligned within a member, as numpy does.
        let bytes = npy_bytes(npz.get("x").unwrap());
        assert_eq!((bytes.len() - 48) % 64, 0);
        assert_eq!(bytes.last_chunk::<4>(), Some(&2.75f32.to_le_bytes()));
        let text = String::from_utf8_lossy(&bytes[10..bytes.len() - 48]);
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"), "{text}");
        assert!(String::from_utf8_lossy(&npy_bytes(npz.get("labels").unwrap())).contains("'shape': (3,)"));
        assert!(String::from_utf8_lossy(&npy_bytes(npz.get("scalar").unwrap())).contains("'shape': ()"));
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.npz");
        std::fs::write(&out, b"earlier").unwrap();
        let bad = Array { name: "w".into(), dtype: ElemType::F32, shape: vec![3], data: vec![0; 8] };
        let err = write_npz(&out, &[bad]).unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
        let twice = Array::from_i64("t", vec![1], &[1]).unwrap();
        assert!(write_npz(&out, &[twice.clone(), twice]).is_err());
        // Into a folder that does not exist: an error naming the destination.
        let missing = dir.path().join("no/such/dir/out.npz");
        let err = write_npz(&missing, &[]).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"earlier");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["out.npz"]);
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x0400), 6.103_515_6e-5);
    }
}
