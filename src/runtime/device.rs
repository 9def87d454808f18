//! Adapter selection and device creation on wgpu.
use std::fmt::Write as _;

/// Environment variable that picks an adapter (same syntax as `--adapter`).
pub const ADAPTER_ENV: &str = "ADAMP_GRAPH_ADAPTER";

/// Errors from finding or opening a GPU.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter, or none matching the override.
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("adapter '{adapter}' refused a device: {detail}")]
    Device {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        detail: String,
    },
    /// Waiting for the device to finish submitted work failed.
    #[error("waiting for the device to finish '{what}' failed: {detail}")]
    Wait {
        /// The work waited for.
        what: String,
        /// Why.
        detail: String,
    },
    /// A buffer readback failed.
    #[error("reading back '{what}' from the device failed: {detail}")]
    Readback {
        /// What was read.
        what: String,
        /// Why.
        detail: String,
    },
}

/// An open device with the adapter's real limits.
pub struct Gpu {
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// Limits requested from (and granted by) the adapter.
    pub limits: wgpu::Limits,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.describe())
    }
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// One line describing an adapter: `name (backend, type, driver)`.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?}, driver '{}' {})", info.name, info.backend, info.device_type, info.driver, info.driver_info)
        .trim_end()
        .to_string()
}

impl Gpu {
    /// Opens the best adapter, or the one `preference` (else `$ADAMP_GRAPH_ADAPTER`)
    /// names: a case-insensitive substring of its name, backend (`vulkan`, `gl`,
    /// `metal`, `dx12`) or type (`discretegpu`, `cpu`, ...). Works with any adapter,
    /// software ones (lavapipe, llvmpipe) included.
    pub fn open(preference: Option<&str>) -> Result<Gpu, GpuError> {
        let env = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        let preference = preference.map(str::to_string).or(env);
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let tried = "backends tried: Vulkan, Metal, DX12, GL (restrict with WGPU_BACKEND)";
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter(format!(
                "{tried}; none reported an adapter. On Linux without a GPU install the software Vulkan driver \
                 (apt-get install mesa-vulkan-drivers libvulkan1); scripts/test.sh does this"
            )));
        }
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (type_rank(i.device_type), backend_rank(i.backend))
        });
        let chosen = match &preference {
            Some(want) => {
                let w = want.to_lowercase();
                let found = adapters.iter().position(|a| {
                    let i = a.get_info();
                    i.name.to_lowercase().contains(&w)
                        || format!("{:?}", i.backend).to_lowercase() == w
                        || format!("{:?}", i.device_type).to_lowercase() == w
                });
                match found {
                    Some(k) => adapters.swap_remove(k),
                    None => {
                        let mut list = String::new();
                        for a in &adapters {
                            let _ = write!(list, "\n  - {}", describe_adapter(&a.get_info()));
                        }
                        return Err(GpuError::NoAdapter(format!(
                            "no adapter matches '{want}' (from --adapter or {ADAPTER_ENV}); {tried}; found:{list}"
                        )));
                    }
                }
            }
            None => adapters.remove(0),
        };
        let info = chosen.get_info();
        let limits = chosen.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("adamp-graph"),
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(chosen.request_device(&desc))
            .map_err(|e| GpuError::Device { adapter: describe_adapter(&info), detail: e.to_string() })?;
        Ok(Gpu { info, limits, device, queue })
    }

    /// The adapter, for reports.
    pub fn describe(&self) -> String {
        describe_adapter(&self.info)
    }

    /// Largest storage-buffer binding in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Copies a buffer region to the host (one blocking round trip).
    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset: u64, len: usize, what: &str) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(buffer, offset, (len * 4) as u64, what)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Copies bytes of a buffer to the host.
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, size: u64, what: &str) -> Result<Vec<u8>, GpuError> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.map_read(&staging, what)
    }

    /// Waits until the queue has finished everything submitted; `what` names
    /// the work in the error.
    pub fn wait(&self, what: &str) -> Result<(), GpuError> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| GpuError::Wait { what: what.to_string(), detail: e.to_string() })
    }

    /// Waits for the queue, then maps a `MAP_READ` buffer and copies its bytes out.
    pub fn map_read(&self, buffer: &wgpu::Buffer, what: &str) -> Result<Vec<u8>, GpuError> {
        let slice = buffer.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let err = |detail: String| GpuError::Readback { what: what.to_string(), detail };
        self.wait(what)?;
        rx.recv().map_err(|e| err(e.to_string()))?.map_err(|e| err(e.to_string()))?;
        let data = slice.get_mapped_range().map_err(|e| err(e.to_string()))?.to_vec();
        buffer.unmap();
        Ok(data)
    }
}
