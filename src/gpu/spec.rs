//! What the GPU layer needs to know of a kernel to build and launch it: its entry points, each
//! with its bindings by name and slot and the rule that bounds its loop iterations. The kernel
//! layer (`crate::kernels`) declares one [`KernelSpec`] per WGSL module; this layer knows no
//! kernel by name.

use crate::dtype::DType;

/// Where a kernel reads its large inputs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputPath {
    /// Storage buffers, bound at the chunk's offset (GPUs).
    Storage,
    /// Read-only storage textures (rgba32float, or rgba32uint of eight halves a texel) filled by
    /// the copy engine and read with `textureLoad`. On Mesa's software adapters a texel fetch
    /// costs a fraction of a storage-buffer load (a gather there is a loop over the lanes with a
    /// branch each), more than paying for the copy.
    Texture,
}

/// The binding slots a kernel may use (0 is the uniform).
pub const SLOTS: usize = 16;

/// How a kernel reads its staged inputs: through which [`InputPath`], and each one's element
/// type by slot (f32 unless set). A kernel's source and pipelines are built once per `Reads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reads {
    pub path: InputPath,
    dtypes: [DType; SLOTS],
}

impl Reads {
    /// Every staged input f32, read through `path`.
    pub const fn new(path: InputPath) -> Reads {
        Reads { path, dtypes: [DType::F32; SLOTS] }
    }

    /// The same with the staged input `binding` of element type `dtype`.
    pub fn with(mut self, binding: Binding, dtype: DType) -> Reads {
        self.dtypes[binding.slot as usize] = dtype;
        self
    }

    /// The element type of the staged input `binding`.
    pub fn dtype(&self, binding: &Binding) -> DType {
        self.dtypes[binding.slot as usize]
    }

    /// The element type of slot `slot`'s staged input.
    pub(crate) fn dtype_at(&self, slot: usize) -> DType {
        self.dtypes[slot]
    }
}

impl From<InputPath> for Reads {
    fn from(path: InputPath) -> Reads {
        Reads::new(path)
    }
}

/// How the shader declares a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindingKind {
    /// `var<storage, read>` of `array<f32|i32|u32>` (or a struct of them).
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// A large input read as f32 through the `ld_<name>` / `ld4_<name>` accessors: a
    /// `var<storage, read>` array named `<name>` on [`InputPath::Storage`] (`array<f32>`, or
    /// `array<u32>` of two halves a word), a read-only `texture_storage_2d` named `<name>_tex` on
    /// [`InputPath::Texture`] (rgba32float, or rgba32uint of eight halves a texel).
    Staged,
}

/// One binding of group 0 other than the uniform (which is always `params` at slot 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The WGSL variable's name (for a staged input, its accessor's suffix).
    pub name: &'static str,
    pub slot: u32,
    pub kind: BindingKind,
}

impl Binding {
    pub const fn read(name: &'static str, slot: u32) -> Binding {
        Binding { name, slot, kind: BindingKind::Read }
    }

    pub const fn read_write(name: &'static str, slot: u32) -> Binding {
        Binding { name, slot, kind: BindingKind::ReadWrite }
    }

    pub const fn staged(name: &'static str, slot: u32) -> Binding {
        Binding { name, slot, kind: BindingKind::Staged }
    }

    /// The WGSL variable bound at this slot on `path`.
    pub fn variable(&self, path: InputPath) -> String {
        match (self.kind, path) {
            (BindingKind::Staged, InputPath::Texture) => format!("{}_tex", self.name),
            _ => self.name.to_string(),
        }
    }
}

/// The rule bounding the loop iterations (summed over all its loops) of one invocation of an
/// entry point, as a function of the dispatch's extents, named in `over` in the order the rule
/// takes them. Mesa's software adapters end an invocation after 65 535 iterations without an
/// error; every dispatch evaluates its entry's rule and is refused past the device's budget,
/// and the planners split work with the same rule.
#[derive(Clone, Copy)]
pub struct LoopBound {
    pub over: &'static [&'static str],
    pub rule: fn(&[u64]) -> u64,
}

impl LoopBound {
    /// A bound that does not depend on the shape.
    pub const fn fixed(rule: fn(&[u64]) -> u64) -> LoopBound {
        LoopBound { over: &[], rule }
    }

    /// The bound at `extents` (one value per name in `over`).
    pub fn at(&self, extents: &[u64]) -> u64 {
        (self.rule)(extents)
    }
}

impl std::fmt::Debug for LoopBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoopBound over {:?}", self.over)
    }
}

/// One entry point: its bindings (besides the uniform) and its loop bound.
#[derive(Debug)]
pub struct EntrySpec {
    pub name: &'static str,
    pub bindings: &'static [Binding],
    pub trips: LoopBound,
}

/// One WGSL module: its name, its entry points, the size of its `Params` uniform, and its
/// complete source for each input path.
#[derive(Debug)]
pub struct KernelSpec {
    pub name: &'static str,
    pub entries: &'static [EntrySpec],
    /// `size_of` the host's `Params` struct, bound at slot 0.
    pub uniform_size: usize,
    /// The complete WGSL source (prelude and shared pieces included) for the way its staged
    /// inputs are read.
    pub source: fn(Reads) -> &'static str,
}

impl KernelSpec {
    /// The entry point called `name`.
    pub fn entry(&self, name: &str) -> Option<&'static EntrySpec> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The kernel's staged inputs (read through `ld_<name>` accessors), in slot order, once each.
    pub fn staged(&self) -> Vec<Binding> {
        let mut staged: Vec<Binding> = self
            .entries
            .iter()
            .flat_map(|e| e.bindings.iter().copied())
            .filter(|b| b.kind == BindingKind::Staged)
            .collect();
        staged.sort_by_key(|b| b.slot);
        staged.dedup();
        staged
    }
}

/// ⌈log2 n⌉ for n ≥ 1: the steps of a tree reduction over n lanes, in loop bounds.
pub const fn log2_ceil(n: u64) -> u64 {
    let n = if n == 0 { 1 } else { n };
    64 - (n - 1).leading_zeros() as u64
}
