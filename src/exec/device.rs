//! A [`Program`] on a wgpu device: its arena in one buffer per page (see
//! [`Program::pages`]), pipelines compiled once
//! (cached by shader text across programs, so a second batch size reuses
//! them), bind groups made once, and a step recorded into the caller's
//! command encoder so that the whole training step is one submission.
use super::kernel::{Elem, Limits};
use super::plan::{Lifetime, Program};
use super::ExecError;
use crate::runtime::Gpu;
use std::collections::HashMap;
use std::sync::Arc;

/// Compiled pipelines by shader text, and bind-group layouts by binding count.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: HashMap<String, Arc<wgpu::ComputePipeline>>,
    layouts: HashMap<usize, (Arc<wgpu::BindGroupLayout>, Arc<wgpu::PipelineLayout>)>,
}

impl PipelineCache {
    /// Pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    /// True when nothing is compiled.
    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }

    pub(crate) fn layout(&mut self, gpu: &Gpu, n: usize) -> (Arc<wgpu::BindGroupLayout>, Arc<wgpu::PipelineLayout>) {
        self.layouts
            .entry(n)
            .or_insert_with(|| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..n as u32)
                    .map(|binding| wgpu::BindGroupLayoutEntry {
                        binding,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only: false }, has_dynamic_offset: false, min_binding_size: None },
                        count: None,
                    })
                    .collect();
                let bgl = gpu.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("exec"), entries: &entries });
                let pl = gpu.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("exec"), bind_group_layouts: &[Some(&bgl)], ..Default::default() });
                (Arc::new(bgl), Arc::new(pl))
            })
            .clone()
    }

    pub(crate) fn pipeline(&mut self, gpu: &Gpu, wgsl: &str, bindings: usize, label: &str) -> Result<Arc<wgpu::ComputePipeline>, String> {
        if let Some(p) = self.pipelines.get(wgsl) {
            return Ok(p.clone());
        }
        let (_, layout) = self.layout(gpu, bindings);
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(wgsl.into()) });
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("the WGSL kernel does not compile: {e}\n{wgsl}"));
        }
        let p = Arc::new(pipeline);
        self.pipelines.insert(wgsl.to_string(), p.clone());
        Ok(p)
    }
}

/// The adapter's limits as kernels see them.
pub fn limits(gpu: &Gpu) -> Limits {
    Limits {
        max_workgroups: gpu.limits.max_compute_workgroups_per_dimension.max(1),
        max_bindings: gpu.limits.max_storage_buffers_per_shader_stage.max(1),
        cpu: gpu.info.device_type == wgpu::DeviceType::Cpu,
        max_buffer: gpu.limits.max_buffer_size,
        max_binding: gpu.limits.max_storage_buffer_binding_size,
    }
}

/// A program on the device.
pub struct Executor<'g> {
    gpu: &'g Gpu,
    program: Program,
    /// The arena's pages, one buffer each.
    arena: Vec<wgpu::Buffer>,
    step_buffer: wgpu::Buffer,
    launches: Vec<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup, [u32; 3])>,
    step: u32,
    seed: u64,
}

impl<'g> Executor<'g> {
    /// Puts a program on the device: allocates its arena, uploads its
    /// constants, compiles its kernels (through `cache`). `seed` seeds the
    /// random streams (Dropout).
    pub fn new(gpu: &'g Gpu, program: Program, cache: &mut PipelineCache, seed: u64) -> Result<Executor<'g>, ExecError> {
        // The planner checked every region against the limits it was given.
        if program.page_bytes > gpu.limits.max_buffer_size || program.binding_bytes > gpu.limits.max_storage_buffer_binding_size {
            return Err(ExecError::Device(format!(
                "the program was planned for buffers of {} MiB and bindings of {} MiB; the adapter allows {} and {} MiB (plan it with exec::device::limits)",
                program.page_bytes >> 20,
                program.binding_bytes >> 20,
                gpu.limits.max_buffer_size >> 20,
                gpu.limits.max_storage_buffer_binding_size >> 20
            )));
        }
        let arena: Vec<wgpu::Buffer> = program
            .pages()
            .into_iter()
            .map(|bytes| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("exec arena page"),
                    size: bytes.max(256),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let step_buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("exec step"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        for (r, words) in &program.constants {
            let region = &program.regions[*r];
            let data: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            if !data.is_empty() {
                let (page, at) = program.location(region.offset);
                gpu.queue.write_buffer(&arena[page], at, &data);
            }
        }
        let mut launches = Vec::with_capacity(program.steps.len());
        for step in &program.steps {
            let node = &program.graph.nodes[step.node];
            let n = step.launch.binds.len();
            let pipeline = cache.pipeline(gpu, &step.launch.wgsl, n, &step.launch.label).map_err(|detail| ExecError::Node { node: node.name.clone(), op: node.op_type.clone(), detail })?;
            let (bgl, _) = cache.layout(gpu, n);
            let entries: Vec<wgpu::BindGroupEntry> = step
                .regions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let resource = match r {
                        Some(r) => {
                            let region = &program.regions[*r];
                            let (page, at) = program.location(region.offset);
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &arena[page], offset: at, size: wgpu::BufferSize::new(region.bytes) })
                        }
                        None => step_buffer.as_entire_binding(),
                    };
                    wgpu::BindGroupEntry { binding: i as u32, resource }
                })
                .collect();
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&step.launch.label), layout: &bgl, entries: &entries });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(ExecError::Node { node: node.name.clone(), op: node.op_type.clone(), detail: format!("binding the launch '{}': {e}", step.launch.label) });
            }
            launches.push((pipeline, bind, step.launch.groups));
        }
        Ok(Executor { gpu, program, arena, step_buffer, launches, step: 0, seed })
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The buffer holding arena offset `offset` (a tensor's, or within one:
    /// no tensor crosses a page), and the offset in that buffer.
    pub fn locate(&self, offset: u64) -> (&wgpu::Buffer, u64) {
        let (page, at) = self.program.location(offset);
        (&self.arena[page], at)
    }

    /// Byte offset (in the arena; [`Executor::locate`] gives its buffer) and size of a named tensor.
    pub fn region(&self, name: &str) -> Result<(u64, u64), ExecError> {
        let r = self.program.region_of(name).ok_or_else(|| ExecError::NoValue(name.to_string()))?;
        Ok((r.offset, r.bytes))
    }

    /// Element type and elements of a named tensor.
    fn checked(&self, name: &str, len: usize) -> Result<(Elem, u64), ExecError> {
        let slot = self.program.slot(name).ok_or_else(|| ExecError::NoValue(name.to_string()))?;
        let info = slot.info.as_ref().ok_or_else(|| ExecError::NoValue(name.to_string()))?;
        let r = slot.region.ok_or_else(|| ExecError::NoValue(name.to_string()))?;
        if info.numel() != len {
            return Err(ExecError::InputShape { name: name.to_string(), detail: format!("{len} elements given for shape {:?}", info.shape) });
        }
        if self.program.regions[r].life != Lifetime::Resident {
            return Err(ExecError::InputShape { name: name.to_string(), detail: "not an input, output or constant: its storage is shared".into() });
        }
        Ok((info.elem, self.program.regions[r].offset))
    }

    /// Writes a float32 input (a parameter, a batch).
    pub fn write_f32(&self, name: &str, data: &[f32]) -> Result<(), ExecError> {
        let (elem, offset) = self.checked(name, data.len())?;
        if elem != Elem::F32 {
            return Err(ExecError::InputShape { name: name.into(), detail: format!("float32 data for a {elem:?} tensor") });
        }
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        if !bytes.is_empty() {
            let (buffer, at) = self.locate(offset);
            self.gpu.queue.write_buffer(buffer, at, &bytes);
        }
        Ok(())
    }

    /// Writes an integer input (labels, indices), checked to fit the device's int32.
    pub fn write_i64(&self, name: &str, data: &[i64]) -> Result<(), ExecError> {
        let (elem, offset) = self.checked(name, data.len())?;
        let words: Vec<u32> = match elem {
            Elem::I32 => data
                .iter()
                .map(|&x| i32::try_from(x).map(|x| x as u32))
                .collect::<Result<_, _>>()
                .map_err(|_| ExecError::InputShape { name: name.into(), detail: "a value does not fit in int32, which the device computes integers in".into() })?,
            Elem::Bool => data.iter().map(|&x| u32::from(x != 0)).collect(),
            Elem::F32 => data.iter().map(|&x| (x as f32).to_bits()).collect(),
        };
        let bytes: Vec<u8> = words.iter().flat_map(|x| x.to_le_bytes()).collect();
        if !bytes.is_empty() {
            let (buffer, at) = self.locate(offset);
            self.gpu.queue.write_buffer(buffer, at, &bytes);
        }
        Ok(())
    }

    /// Reads a resident tensor's 4-byte words, with its element type.
    pub fn read_words(&self, name: &str) -> Result<(Elem, Vec<u32>), ExecError> {
        let slot = self.program.slot(name).ok_or_else(|| ExecError::NoValue(name.to_string()))?;
        let n = slot.info.as_ref().map(|i| i.numel()).unwrap_or(0);
        let (elem, offset) = self.checked(name, n)?;
        let (buffer, at) = self.locate(offset);
        let bytes = self.gpu.read_bytes(buffer, at, 4 * n as u64, name)?;
        Ok((elem, bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }

    /// Reads a resident tensor as float32 (integers and bools converted).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, ExecError> {
        let (elem, words) = self.read_words(name)?;
        Ok(words
            .into_iter()
            .map(|w| match elem {
                Elem::F32 => f32::from_bits(w),
                Elem::I32 => w as i32 as f32,
                Elem::Bool => w as f32,
            })
            .collect())
    }

    /// Reads a resident integer or bool tensor exactly (bools as 0 and 1).
    pub fn read_ints(&self, name: &str) -> Result<Vec<i64>, ExecError> {
        match self.read_words(name)? {
            (Elem::I32, w) => Ok(w.into_iter().map(|x| x as i32 as i64).collect()),
            (Elem::Bool, w) => Ok(w.into_iter().map(|x| i64::from(x != 0)).collect()),
            (Elem::F32, _) => Err(ExecError::NotIntegers(name.to_string())),
        }
    }

    /// Sets the step counter of the random streams (the next [`Executor::encode`] uses it).
    pub fn set_step(&mut self, step: u32) {
        self.step = step;
    }

    /// The step counter.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Records the program's launches into `enc` (one compute pass) and
    /// advances the step counter.
    pub fn encode(&mut self, enc: &mut wgpu::CommandEncoder) {
        self.upload_step();
        self.step = self.step.wrapping_add(1);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("exec"), timestamp_writes: None });
        for (pipeline, bind, groups) in &self.launches {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
    }

    /// Times each launch of the program on its own: one submission per
    /// launch, waited for, less the round trip of an empty submission (the
    /// median of five). Seconds per launch, in [`Program::steps`] order. The
    /// launches read the arena as it is (run the program once first for
    /// meaningful inputs).
    pub fn profile(&mut self) -> Result<Vec<f64>, ExecError> {
        let mut empty = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
            self.gpu.queue.submit([enc.finish()]);
            self.gpu.wait("the profile")?;
            empty.push(t.elapsed().as_secs_f64());
        }
        empty.sort_by(f64::total_cmp);
        let base = empty[2];
        self.upload_step();
        self.gpu.wait("the profile")?;
        let mut out = Vec::with_capacity(self.launches.len());
        for (pipeline, bind, groups) in &self.launches {
            let t = std::time::Instant::now();
            let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("profile"), timestamp_writes: None });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
            self.gpu.queue.submit([enc.finish()]);
            self.gpu.wait("the profile")?;
            out.push((t.elapsed().as_secs_f64() - base).max(0.0));
        }
        Ok(out)
    }

    /// Runs the program once and waits for it.
    pub fn run(&mut self) -> Result<(), ExecError> {
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("exec") });
        self.encode(&mut enc);
        self.gpu.queue.submit([enc.finish()]);
        Ok(self.gpu.wait("queue")?)
    }

    /// Writes the random streams' step counter and seed for the next launches.
    fn upload_step(&self) {
        let words = [self.step, self.seed as u32, (self.seed >> 32) as u32, 0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.gpu.queue.write_buffer(&self.step_buffer, 0, &bytes);
    }
}
