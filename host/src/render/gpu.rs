//! The GPU executor of [`FramePlan`]s: wgpu compute shaders that follow the
//! per-pixel rules of `render::plan` literally, so that the CPU reference
//! and this path agree (the agreement test holds them to ΔE2000 < 1.0 and
//! output codes to ±1).
//!
//! Three kernels (WGSL under `render/shaders/`):
//! - `composite`: one invocation per canvas pixel loops the layers (mix
//!   pairs, blend modes, colour operations with a tetrahedral 3D LUT and
//!   the transfer functions), sampling sources bilinearly by hand from
//!   storage buffers (no hardware filtering, so the arithmetic is the CPU's).
//!   Sources sit in four slots; a frame with more distinct sources is drawn
//!   in several batches of whole mix pairs, each continuing from the canvas.
//! - `resample`: one axis of the separable tent filter (run twice when an
//!   output's size differs from the canvas).
//! - `convert`: primaries, OETF, Y'CbCr matrix, range, chroma averaging,
//!   ordered dither and alpha, one invocation per 32-bit word of the packed
//!   planes, so the readback is the final bytes.
//!
//! Sources stay resident between frames keyed by [`SourceKey`] (uploaded
//! when a key or generation is new, dropped when a frame no longer uses
//! them); working buffers are reused; each frame is one submission and one
//! readback.

use crate::manifest::model::{BlendMode, Primaries, Transfer};
use crate::render::image::{plane_size, Yuv};
use crate::render::plan::{
    FramePlan, LayerOp, LinearImage, Lut3d, MixKind, OutputFormat, Renderer, SourceKey,
};
use bytemuck::{Pod, Zeroable};
use deliver_plugin_api::abi::pix;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const COMMON_WGSL: &str = include_str!("shaders/common.wgsl");
const COMPOSITE_WGSL: &str = include_str!("shaders/composite.wgsl");
const RESAMPLE_WGSL: &str = include_str!("shaders/resample.wgsl");
const CONVERT_WGSL: &str = include_str!("shaders/convert.wgsl");

/// Source slots of the composite kernel (storage bindings 4..=7).
const SLOTS: usize = 4;
/// Bytes of one uniform parameter block slot (≥ every device's
/// `min_uniform_buffer_offset_alignment`, ≥ the largest block).
const PARAM_SLOT: u64 = 256;

/// Whether a GPU adapter can be opened here (honours `WGPU_BACKEND`).
pub fn available() -> bool {
    GpuRenderer::new().is_ok()
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CompositeParams {
    size: [u32; 4],
    flags: [u32; 4],
    background: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GpuLayer {
    m0: [f32; 4],
    m1: [f32; 4],
    crop: [f32; 4],
    lift: [f32; 4],
    gamma: [f32; 4],
    gain: [f32; 4],
    lut_min: [f32; 4],
    lut_max: [f32; 4],
    mixp: [f32; 4],
    dip: [f32; 4],
    info: [u32; 4],
    lut: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ResampleParams {
    size: [u32; 4],
    axis: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvertParams {
    dims: [u32; 4],
    fmt: [u32; 4],
    planes: [u32; 4],
    misc: [u32; 4],
    chroma: [u32; 4],
    m0: [f32; 4],
    m1: [f32; 4],
    m2: [f32; 4],
    k: [f32; 4],
}

/// A source buffer on the device.
struct Resident {
    buf: wgpu::Buffer,
    bytes: u64,
    width: u32,
    height: u32,
}

/// A growable device buffer reused between frames.
struct Scratch {
    buf: Option<wgpu::Buffer>,
    usage: wgpu::BufferUsages,
    label: &'static str,
}

impl Scratch {
    fn new(label: &'static str, usage: wgpu::BufferUsages) -> Self {
        Scratch {
            buf: None,
            usage,
            label,
        }
    }

    /// A buffer of at least `size` bytes (grown by half again when it must
    /// grow, so slowly growing sizes do not reallocate every frame).
    fn get(&mut self, device: &wgpu::Device, size: u64) -> &wgpu::Buffer {
        let size = size.max(16).next_multiple_of(16);
        if self.buf.as_ref().is_none_or(|b| b.size() < size) {
            let grown = self
                .buf
                .as_ref()
                .map_or(size, |b| (b.size() * 3 / 2).max(size));
            self.buf = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(self.label),
                size: grown.next_multiple_of(16),
                usage: self.usage,
                mapped_at_creation: false,
            }));
        }
        self.buf.as_ref().expect("allocated above")
    }
}

/// One distinct output of a frame: its index in the caller's list, the
/// parameter blocks of its two resample passes (when its size differs from
/// the canvas) and of its conversion.
type ConvertJob = (usize, Option<(usize, usize)>, usize);

/// How one output's words are laid out in the shared output buffer.
struct OutputSlot {
    /// First word in the output buffer.
    word: u64,
    words: u64,
    /// Byte offset and length of each plane from the output's start.
    planes: Vec<(usize, usize)>,
    layout: pix::Layout,
}

/// The wgpu renderer. See the module docs.
pub struct GpuRenderer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    adapter: String,
    software: bool,
    max_binding: u64,
    composite: wgpu::ComputePipeline,
    resample: wgpu::ComputePipeline,
    convert: wgpu::ComputePipeline,
    sources: HashMap<SourceKey, Resident>,
    luts: Option<Arc<Vec<Lut3d>>>,
    lut_buf: Scratch,
    layer_buf: Scratch,
    params: Scratch,
    canvas: Scratch,
    /// Per output: horizontal and vertical resample results.
    resampled: Vec<(Scratch, Scratch)>,
    out: Scratch,
    readback: Scratch,
    dummy: wgpu::Buffer,
    /// Device errors that happened outside an error scope.
    lost: Arc<Mutex<Option<String>>>,
    canvas_primaries: Primaries,
    /// Source uploads so far (residency shows in tests and logs).
    uploads: u64,
}

fn storage(usage_extra: wgpu::BufferUsages) -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | usage_extra
}

impl GpuRenderer {
    /// Opens the default adapter (`WGPU_BACKEND`, `WGPU_POWER_PREF` and
    /// `WGPU_ADAPTER_NAME` are honoured) and builds the kernels.
    ///
    /// # Errors
    /// No adapter, or no device on it.
    pub fn new() -> Result<GpuRenderer, String> {
        pollster::block_on(Self::open())
    }

    async fn open() -> Result<GpuRenderer, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = match wgpu::util::initialize_adapter_from_env(&instance, None).await {
            Ok(a) => a,
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    format!(
                        "no GPU adapter (WGPU_BACKEND={:?}): {e}",
                        std::env::var("WGPU_BACKEND").ok()
                    )
                })?,
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("deliver render"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("GPU adapter {} has no usable device: {e}", info.name))?;
        let lost = Arc::new(Mutex::new(None));
        {
            let lost = lost.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut l = lost.lock().unwrap_or_else(|p| p.into_inner());
                if l.is_none() {
                    *l = Some(e.to_string());
                }
            }));
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = |label: &str, src: &str| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(format!("{COMMON_WGSL}\n{src}").into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let composite = pipeline("composite", COMPOSITE_WGSL);
        let resample = pipeline("resample", RESAMPLE_WGSL);
        let convert = pipeline("convert", CONVERT_WGSL);
        if let Some(e) = scope.pop().await {
            return Err(format!("GPU kernels do not build on {}: {e}", info.name));
        }
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("empty source slot"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(GpuRenderer {
            name: format!("gpu ({}, {})", info.name, info.backend),
            adapter: info.name.clone(),
            software: info.device_type == wgpu::DeviceType::Cpu,
            device,
            queue,
            max_binding,
            composite,
            resample,
            convert,
            sources: HashMap::new(),
            luts: None,
            lut_buf: Scratch::new("luts", storage(wgpu::BufferUsages::empty())),
            layer_buf: Scratch::new("layers", storage(wgpu::BufferUsages::empty())),
            params: Scratch::new(
                "params",
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            canvas: Scratch::new("canvas", storage(wgpu::BufferUsages::COPY_SRC)),
            resampled: Vec::new(),
            out: Scratch::new("outputs", storage(wgpu::BufferUsages::COPY_SRC)),
            readback: Scratch::new(
                "readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            dummy,
            lost,
            canvas_primaries: Primaries::Bt709,
            uploads: 0,
        })
    }

    /// The adapter's name, as the driver gives it.
    pub fn adapter_name(&self) -> &str {
        &self.adapter
    }

    /// Whether the adapter is a software rasterizer (lavapipe, WARP,
    /// SwiftShader): the kernels run on the CPU through it.
    pub fn is_software(&self) -> bool {
        self.software
    }

    /// Sets the canvas's primaries, which [`FramePlan`] does not carry;
    /// outputs tagged with other primaries get a 3×3 conversion in linear
    /// light. BT.709 unless set.
    pub fn set_canvas_primaries(&mut self, primaries: Primaries) {
        self.canvas_primaries = primaries;
    }

    /// Sources uploaded since this renderer was made (a source kept
    /// resident across frames is counted once).
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    /// Sources resident on the device now.
    pub fn resident_sources(&self) -> usize {
        self.sources.len()
    }

    fn check_size(&self, what: &str, bytes: u64) -> Result<(), String> {
        if bytes > self.max_binding {
            return Err(format!(
                "{what} needs {bytes} bytes in one GPU buffer; {} allows {}",
                self.name, self.max_binding
            ));
        }
        Ok(())
    }

    /// Uploads the sources this frame needs that are not resident and drops
    /// the ones it does not use (reusing a dropped buffer of the same size
    /// for a new generation of a media frame).
    fn upload_sources(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
    ) -> Result<(), String> {
        let mut free: Vec<Resident> = Vec::new();
        let keys = &plan.sources;
        self.sources.retain(|k, r| {
            if keys.contains(k) {
                true
            } else {
                free.push(Resident {
                    buf: r.buf.clone(),
                    bytes: r.bytes,
                    width: r.width,
                    height: r.height,
                });
                false
            }
        });
        for (i, (key, img)) in keys.iter().zip(sources).enumerate() {
            let n = img.width as usize * img.height as usize;
            if img.width == 0 || img.height == 0 || img.data.len() != n {
                return Err(format!(
                    "source {i} ({key:?}) is {}×{} but holds {} pixels",
                    img.width,
                    img.height,
                    img.data.len()
                ));
            }
            if let Some(r) = self.sources.get(key) {
                if r.width == img.width && r.height == img.height {
                    continue;
                }
            }
            let bytes = n as u64 * 16;
            self.check_size(&format!("source {i} ({}×{})", img.width, img.height), bytes)?;
            let buf = match free.iter().position(|r| r.bytes == bytes) {
                Some(p) => free.swap_remove(p).buf,
                None => self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("source"),
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            };
            self.queue
                .write_buffer(&buf, 0, bytemuck::cast_slice(&img.data));
            self.uploads += 1;
            self.sources.insert(
                *key,
                Resident {
                    buf,
                    bytes,
                    width: img.width,
                    height: img.height,
                },
            );
        }
        Ok(())
    }

    /// Uploads the plan's LUTs when the list changed; returns each LUT's
    /// first entry in the LUT buffer.
    fn upload_luts(&mut self, luts: &Arc<Vec<Lut3d>>) -> Result<Vec<u32>, String> {
        let mut offsets = Vec::with_capacity(luts.len());
        let mut total = 0usize;
        for (i, l) in luts.iter().enumerate() {
            let n = l.size as usize;
            if n < 2 || l.data.len() != n * n * n {
                return Err(format!(
                    "LUT {i}: size {} needs {} entries, has {}",
                    l.size,
                    n * n * n,
                    l.data.len()
                ));
            }
            offsets.push(total as u32);
            total += l.data.len();
        }
        let same = self.luts.as_ref().is_some_and(|a| Arc::ptr_eq(a, luts));
        if !same {
            let mut flat: Vec<[f32; 4]> = Vec::with_capacity(total.max(1));
            for l in luts.iter() {
                flat.extend(l.data.iter().map(|c| [c[0], c[1], c[2], 0.0]));
            }
            if flat.is_empty() {
                flat.push([0.0; 4]);
            }
            let bytes = flat.len() as u64 * 16;
            self.check_size("the LUTs", bytes)?;
            let buf = self.lut_buf.get(&self.device, bytes);
            self.queue.write_buffer(buf, 0, bytemuck::cast_slice(&flat));
            self.luts = Some(luts.clone());
        }
        Ok(offsets)
    }

    /// Draws the plan and converts it; one submission, one readback.
    fn run(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        outputs: &[OutputFormat],
        want_linear: bool,
    ) -> Result<(Option<LinearImage>, Vec<Yuv>), String> {
        if let Some(e) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(format!("{}: earlier device error: {e}", self.name));
        }
        if plan.sources.len() != sources.len() {
            return Err(format!(
                "the plan names {} sources but {} were given",
                plan.sources.len(),
                sources.len()
            ));
        }
        if plan.width == 0 || plan.height == 0 {
            return Err(format!("canvas is {}×{}", plan.width, plan.height));
        }
        for (i, l) in plan.layers.iter().enumerate() {
            if l.source >= sources.len() {
                return Err(format!(
                    "layer {i} draws source {} of {}",
                    l.source,
                    sources.len()
                ));
            }
            if let Some(k) = l.colour.lut {
                if k >= plan.luts.len() {
                    return Err(format!("layer {i} uses LUT {k} of {}", plan.luts.len()));
                }
            }
        }
        let scope_v = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let scope_m = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let result = self.encode_and_read(plan, sources, outputs, want_linear);
        let oom = pollster::block_on(scope_m.pop());
        let invalid = pollster::block_on(scope_v.pop());
        if let Some(e) = oom.or(invalid) {
            return Err(format!("{}: {e}", self.name));
        }
        result
    }

    fn encode_and_read(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        outputs: &[OutputFormat],
        want_linear: bool,
    ) -> Result<(Option<LinearImage>, Vec<Yuv>), String> {
        self.upload_sources(plan, sources)?;
        let lut_offsets = self.upload_luts(&plan.luts)?;
        let (w, h) = (plan.width, plan.height);
        let canvas_bytes = u64::from(w) * u64::from(h) * 16;
        self.check_size(&format!("the {w}×{h} canvas"), canvas_bytes)?;

        // Layers, grouped into batches of whole mix pairs that fit the slots.
        let mut gl: Vec<GpuLayer> = plan
            .layers
            .iter()
            .map(|l| {
                let img = &sources[l.source];
                gpu_layer(l, img.width, img.height, &plan.luts, &lut_offsets)
            })
            .collect();
        let batches = batches(&plan.layers);
        // Param blocks: one per batch, then per output up to two resample
        // passes and one conversion.
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for (bi, b) in batches.iter().enumerate() {
            for (g, op) in gl[b.begin..b.end]
                .iter_mut()
                .zip(&plan.layers[b.begin..b.end])
            {
                let slot = b
                    .sources
                    .iter()
                    .position(|&s| s == op.source)
                    .expect("batched");
                g.info[0] = slot as u32;
            }
            blocks.push(
                bytemuck::bytes_of(&CompositeParams {
                    size: [w, h, b.begin as u32, b.end as u32],
                    flags: [u32::from(bi == 0), transfer_code(plan.transfer), 0, 0],
                    background: plan.background,
                })
                .to_vec(),
            );
        }

        // Outputs: identical formats are converted once.
        let mut slots: Vec<OutputSlot> = Vec::new();
        let mut first_of: Vec<usize> = Vec::with_capacity(outputs.len());
        let mut convert_blocks: Vec<ConvertJob> = Vec::new();
        let mut word = 0u64;
        for (oi, f) in outputs.iter().enumerate() {
            if let Some(j) = outputs[..oi].iter().position(|g| g == f) {
                first_of.push(j);
                continue;
            }
            first_of.push(oi);
            let (params, slot) = self.convert_params(f, word)?;
            word += slot.words;
            let resample = if (f.width, f.height) != (w, h) {
                let a = blocks.len();
                blocks.push(
                    bytemuck::bytes_of(&ResampleParams {
                        size: [w, h, f.width, f.height],
                        axis: [0; 4],
                    })
                    .to_vec(),
                );
                blocks.push(
                    bytemuck::bytes_of(&ResampleParams {
                        size: [w, h, f.width, f.height],
                        axis: [1, 0, 0, 0],
                    })
                    .to_vec(),
                );
                Some((a, a + 1))
            } else {
                None
            };
            convert_blocks.push((oi, resample, blocks.len()));
            blocks.push(bytemuck::bytes_of(&params).to_vec());
            slots.push(slot);
        }

        // Upload layers and parameters.
        let layer_bytes: &[u8] = if gl.is_empty() {
            &[0u8; std::mem::size_of::<GpuLayer>()]
        } else {
            bytemuck::cast_slice(&gl)
        };
        let layer_buf = self.layer_buf.get(&self.device, layer_bytes.len() as u64);
        self.queue.write_buffer(layer_buf, 0, layer_bytes);
        let mut param_bytes = vec![0u8; blocks.len() * PARAM_SLOT as usize];
        for (i, b) in blocks.iter().enumerate() {
            param_bytes[i * PARAM_SLOT as usize..][..b.len()].copy_from_slice(b);
        }
        let params = self.params.get(&self.device, param_bytes.len() as u64);
        self.queue.write_buffer(params, 0, &param_bytes);

        let out_bytes = word * 4;
        self.check_size("the converted outputs", out_bytes)?;
        let linear_bytes = if want_linear { canvas_bytes } else { 0 };
        let read_bytes = linear_bytes + out_bytes;
        // Allocate everything before borrowing buffers for the encoder.
        self.canvas.get(&self.device, canvas_bytes);
        self.out.get(&self.device, out_bytes.max(16));
        self.readback.get(&self.device, read_bytes.max(16));
        while self.resampled.len() < convert_blocks.len() {
            let u = storage(wgpu::BufferUsages::empty());
            self.resampled
                .push((Scratch::new("resample h", u), Scratch::new("resample v", u)));
        }
        for (k, (oi, resample, _)) in convert_blocks.iter().enumerate() {
            if resample.is_some() {
                let f = &outputs[*oi];
                let hb = u64::from(f.width) * u64::from(h) * 16;
                let vb = u64::from(f.width) * u64::from(f.height) * 16;
                self.check_size("a resampled output", hb.max(vb))?;
                let (a, b) = &mut self.resampled[k];
                a.get(&self.device, hb);
                b.get(&self.device, vb);
            }
        }

        let dev = &self.device;
        let params = self.params.buf.as_ref().expect("allocated");
        let canvas = self.canvas.buf.as_ref().expect("allocated");
        let out = self.out.buf.as_ref().expect("allocated");
        let readback = self.readback.buf.as_ref().expect("allocated");
        let layer_buf = self.layer_buf.buf.as_ref().expect("allocated");
        let lut_buf = self.lut_buf.buf.as_ref().expect("allocated");
        let param_entry = |binding: u32, block: usize, size: usize| wgpu::BindGroupEntry {
            binding,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: block as u64 * PARAM_SLOT,
                size: wgpu::BufferSize::new(size as u64),
            }),
        };
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("frame"),
        });
        {
            let layout = self.composite.get_bind_group_layout(0);
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("composite"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.composite);
            for (bi, b) in batches.iter().enumerate() {
                let mut entries = vec![
                    param_entry(0, bi, std::mem::size_of::<CompositeParams>()),
                    whole(1, layer_buf),
                    whole(2, lut_buf),
                    whole(3, canvas),
                ];
                for s in 0..SLOTS {
                    let buf = match b.sources.get(s) {
                        Some(&src) => &self.sources[&plan.sources[src]].buf,
                        None => &self.dummy,
                    };
                    entries.push(whole(4 + s as u32, buf));
                }
                let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("composite"),
                    layout: &layout,
                    entries: &entries,
                });
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(w.div_ceil(16), h.div_ceil(16), 1);
            }
        }
        for (k, (oi, resample, cblock)) in convert_blocks.iter().enumerate() {
            let f = &outputs[*oi];
            let mut input = canvas;
            if let Some((ha, va)) = resample {
                let (sa, sb) = &self.resampled[k];
                let (ba, bb) = (
                    sa.buf.as_ref().expect("allocated"),
                    sb.buf.as_ref().expect("allocated"),
                );
                let layout = self.resample.get_bind_group_layout(0);
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("resample"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.resample);
                let size = std::mem::size_of::<ResampleParams>();
                for (block, src, dst, gw, gh) in [
                    (*ha, canvas, ba, f.width, h),
                    (*va, ba, bb, f.width, f.height),
                ] {
                    let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("resample"),
                        layout: &layout,
                        entries: &[param_entry(0, block, size), whole(1, src), whole(2, dst)],
                    });
                    pass.set_bind_group(0, &bg, &[]);
                    pass.dispatch_workgroups(gw.div_ceil(16), gh.div_ceil(16), 1);
                }
                input = bb;
            }
            let slot = &slots[k];
            let layout = self.convert.get_bind_group_layout(0);
            let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("convert"),
                layout: &layout,
                entries: &[
                    param_entry(0, *cblock, std::mem::size_of::<ConvertParams>()),
                    whole(1, input),
                    whole(2, out),
                ],
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("convert"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.convert);
            pass.set_bind_group(0, &bg, &[]);
            let (gx, gy) = grid(slot.words);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        if want_linear {
            enc.copy_buffer_to_buffer(canvas, 0, readback, 0, canvas_bytes);
        }
        if out_bytes > 0 {
            enc.copy_buffer_to_buffer(out, 0, readback, linear_bytes, out_bytes);
        }
        self.queue.submit([enc.finish()]);

        if read_bytes == 0 {
            dev.poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| format!("{}: {e}", self.name))?;
            return Ok((None, Vec::new()));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, 0..read_bytes, move |r| {
            let _ = tx.send(r);
        });
        dev.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("{}: waiting for the frame: {e}", self.name))?;
        rx.recv()
            .map_err(|_| format!("{}: the readback was dropped", self.name))?
            .map_err(|e| format!("{}: reading the frame back: {e}", self.name))?;
        let result = {
            let view = readback
                .get_mapped_range(0..read_bytes)
                .map_err(|e| format!("{}: mapping the readback: {e}", self.name))?;
            let linear = want_linear.then(|| LinearImage {
                width: w,
                height: h,
                data: bytemuck::pod_collect_to_vec(&view[..linear_bytes as usize]),
            });
            let bytes = &view[linear_bytes as usize..];
            let mut converted: Vec<Yuv> = Vec::with_capacity(slots.len());
            for (k, (oi, _, _)) in convert_blocks.iter().enumerate() {
                let f = &outputs[*oi];
                let slot = &slots[k];
                let mut y = crate::render::convert::blank(f);
                let base = slot.word as usize * 4;
                for (p, &(off, len)) in slot.planes.iter().enumerate() {
                    y.planes[p].copy_from_slice(&bytes[base + off..base + off + len]);
                }
                debug_assert_eq!(slot.layout.planes, y.planes.len());
                converted.push(y);
            }
            (linear, converted)
        };
        readback.unmap();
        let (linear, converted) = result;
        // Back in the caller's order, duplicates cloned.
        let mut by_index: Vec<Option<Yuv>> = vec![None; outputs.len()];
        for ((oi, _, _), y) in convert_blocks.iter().zip(converted) {
            by_index[*oi] = Some(y);
        }
        let mut frames = Vec::with_capacity(outputs.len());
        for (i, &j) in first_of.iter().enumerate() {
            let y = if i == j {
                by_index[i].take().expect("converted")
            } else {
                frames
                    .get(j)
                    .cloned()
                    .expect("the first of equal formats precedes")
            };
            frames.push(y);
        }
        Ok((linear, frames))
    }

    /// Parameters and layout of one output, its words starting at `word`.
    fn convert_params(
        &self,
        f: &OutputFormat,
        word: u64,
    ) -> Result<(ConvertParams, OutputSlot), String> {
        let layout = pix::layout(f.pix_fmt)
            .filter(|_| f.pix_fmt != pix::NONE)
            .ok_or_else(|| format!("output format: unknown pixel format {}", f.pix_fmt))?;
        if f.width == 0 || f.height == 0 {
            return Err(format!("output format: size {}×{}", f.width, f.height));
        }
        let rgba = f.pix_fmt == pix::RGBA;
        let tf = output_transfer(f.transfer).ok_or_else(|| {
            format!(
                "output format: transfer {} is not supported (1, 4, 5, 6, 8, 13, 14, 15)",
                f.transfer
            )
        })?;
        let (kr, kb) = if rgba {
            (0.2126, 0.0722)
        } else {
            matrix_coefficients(f.matrix).ok_or_else(|| {
                format!(
                    "output format: matrix {} is not supported (1, 5, 6, 9)",
                    f.matrix
                )
            })?
        };
        let full = match f.range {
            2 => true,
            1 => false,
            0 => rgba,
            r => {
                return Err(format!(
                    "output format: range {r} is not 1 (limited) or 2 (full)"
                ))
            }
        };
        let m = primaries_matrix(self.canvas_primaries, f.primaries)?;
        let mut planes = Vec::with_capacity(layout.planes);
        let mut off = 0usize;
        for p in 0..layout.planes {
            let (pw, ph) = plane_size(f.width, f.height, layout, p);
            let len = pw * ph * layout.bytes_per_sample;
            planes.push((off, len));
            off += len;
        }
        let words = off.div_ceil(4) as u64;
        let (cw, ch) = plane_size(f.width, f.height, layout, 1);
        let mut plane_offsets = [u32::MAX; 4];
        for (p, &(o, _)) in planes.iter().enumerate() {
            plane_offsets[p] = o as u32;
        }
        let (gx, _) = grid(words);
        let params = ConvertParams {
            dims: [f.width, f.height, words as u32, gx * 256],
            fmt: [
                layout.bit_depth,
                if rgba {
                    4
                } else {
                    layout.bytes_per_sample as u32
                },
                layout.planes as u32,
                layout.chroma_shift_x | layout.chroma_shift_y << 4 | u32::from(rgba) << 8,
            ],
            planes: plane_offsets,
            misc: [word as u32, tf, u32::from(f.dither), u32::from(full)],
            chroma: [cw as u32, ch as u32, 0, 0],
            m0: [m[0][0], m[0][1], m[0][2], 0.0],
            m1: [m[1][0], m[1][1], m[1][2], 0.0],
            m2: [m[2][0], m[2][1], m[2][2], 0.0],
            k: [kr, kb, 0.0, 0.0],
        };
        Ok((
            params,
            OutputSlot {
                word,
                words,
                planes,
                layout,
            },
        ))
    }
}

fn whole(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// Workgroups (256 invocations each) covering `words`, folded into two
/// dimensions so large frames stay under the 65535-per-dimension limit.
fn grid(words: u64) -> (u32, u32) {
    let groups = words.div_ceil(256).max(1);
    let gx = groups.min(65535);
    (gx as u32, groups.div_ceil(gx) as u32)
}

/// A run of whole mix groups drawn in one dispatch.
struct Batch {
    begin: usize,
    end: usize,
    /// Source indices bound to slots 0.. in this batch.
    sources: Vec<usize>,
}

/// Splits the layer list into batches: a layer and the next one when that
/// one mixes with it form a group (the plan's loop), and groups are added
/// to a batch while its distinct sources fit the slots. No layers: one
/// empty batch, which fills the canvas with the background.
fn batches(layers: &[LayerOp]) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut cur = Batch {
        begin: 0,
        end: 0,
        sources: Vec::new(),
    };
    let mut i = 0;
    while i < layers.len() {
        let len = if i + 1 < layers.len() && layers[i + 1].mix.is_some() {
            2
        } else {
            1
        };
        let mut need: Vec<usize> = cur.sources.clone();
        for l in &layers[i..i + len] {
            if !need.contains(&l.source) {
                need.push(l.source);
            }
        }
        if need.len() > SLOTS {
            let begin = i;
            out.push(std::mem::replace(
                &mut cur,
                Batch {
                    begin,
                    end: begin,
                    sources: Vec::new(),
                },
            ));
            need.clear();
            for l in &layers[i..i + len] {
                if !need.contains(&l.source) {
                    need.push(l.source);
                }
            }
        }
        cur.sources = need;
        cur.end = i + len;
        i += len;
    }
    out.push(cur);
    out
}

fn transfer_code(t: Transfer) -> u32 {
    match t {
        Transfer::Bt709 => 0,
        Transfer::Srgb => 1,
        Transfer::Linear => 2,
        Transfer::Gamma22 => 3,
        Transfer::Gamma28 => 4,
    }
}

/// Shader transfer code of an FFmpeg transfer tag.
fn output_transfer(tag: u32) -> Option<u32> {
    Some(match tag {
        1 | 6 | 14 | 15 => 0,
        13 => 1,
        8 => 2,
        4 => 3,
        5 => 4,
        _ => return None,
    })
}

/// (Kr, Kb) of an FFmpeg matrix tag.
fn matrix_coefficients(tag: u32) -> Option<(f32, f32)> {
    Some(match tag {
        1 => (0.2126, 0.0722),
        5 | 6 => (0.299, 0.114),
        9 => (0.2627, 0.0593),
        _ => return None,
    })
}

/// CIE xy of red, green, blue for an FFmpeg primaries tag (white D65).
fn chromaticities(tag: u32) -> Option<[[f64; 2]; 3]> {
    Some(match tag {
        1 => [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]],
        9 => [[0.708, 0.292], [0.170, 0.797], [0.131, 0.046]],
        6 | 7 => [[0.630, 0.340], [0.310, 0.595], [0.155, 0.070]],
        5 => [[0.64, 0.33], [0.29, 0.60], [0.15, 0.06]],
        _ => return None,
    })
}

fn rgb_to_xyz(p: [[f64; 2]; 3]) -> [[f64; 3]; 3] {
    let white = [0.3127 / 0.3290, 1.0, (1.0 - 0.3127 - 0.3290) / 0.3290];
    let xyz = |c: [f64; 2]| [c[0] / c[1], 1.0, (1.0 - c[0] - c[1]) / c[1]];
    let (r, g, b) = (xyz(p[0]), xyz(p[1]), xyz(p[2]));
    let m = [[r[0], g[0], b[0]], [r[1], g[1], b[1]], [r[2], g[2], b[2]]];
    let s = mul_vec(invert(m), white);
    let mut out = m;
    for row in &mut out {
        for (c, v) in row.iter_mut().enumerate() {
            *v *= s[c];
        }
    }
    out
}

fn invert(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let c = |a: usize, b: usize, c: usize, d: usize| m[a][b] * m[c][d];
    [
        [
            (c(1, 1, 2, 2) - c(1, 2, 2, 1)) / det,
            (c(0, 2, 2, 1) - c(0, 1, 2, 2)) / det,
            (c(0, 1, 1, 2) - c(0, 2, 1, 1)) / det,
        ],
        [
            (c(1, 2, 2, 0) - c(1, 0, 2, 2)) / det,
            (c(0, 0, 2, 2) - c(0, 2, 2, 0)) / det,
            (c(0, 2, 1, 0) - c(0, 0, 1, 2)) / det,
        ],
        [
            (c(1, 0, 2, 1) - c(1, 1, 2, 0)) / det,
            (c(0, 1, 2, 0) - c(0, 0, 2, 1)) / det,
            (c(0, 0, 1, 1) - c(0, 1, 1, 0)) / det,
        ],
    ]
}

fn mul_vec(m: [[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

fn mul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut o = [[0.0; 3]; 3];
    for (r, row) in o.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    o
}

/// The linear-light 3×3 from canvas primaries to an output's (FFmpeg tag;
/// identity when they are the same or the tag is 2, unspecified).
fn primaries_matrix(from: Primaries, to: u32) -> Result<[[f32; 3]; 3], String> {
    let from_tag = match from {
        Primaries::Bt709 => 1,
        Primaries::Bt2020 => 9,
        Primaries::Smpte170m => 6,
        Primaries::Bt470bg => 5,
    };
    let mut m = [[0.0f32; 3]; 3];
    if to == 2 || chromaticities(to) == chromaticities(from_tag) {
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        return Ok(m);
    }
    let src = chromaticities(from_tag).expect("every canvas primaries value has chromaticities");
    let dst = chromaticities(to).ok_or_else(|| {
        format!("output format: primaries {to} are not supported (1, 5, 6, 7, 9)")
    })?;
    let d = mul(invert(rgb_to_xyz(dst)), rgb_to_xyz(src));
    for (row, drow) in m.iter_mut().zip(d) {
        for (v, dv) in row.iter_mut().zip(drow) {
            *v = dv as f32;
        }
    }
    Ok(m)
}

fn gpu_layer(
    l: &LayerOp,
    width: u32,
    height: u32,
    luts: &[Lut3d],
    lut_offsets: &[u32],
) -> GpuLayer {
    let m = l.inverse;
    let c = &l.colour;
    let blend = match l.blend {
        BlendMode::Normal => 0,
        BlendMode::Add => 1,
        BlendMode::Multiply => 2,
        BlendMode::Screen => 3,
    };
    let (kind, mixp, dip) = match l.mix {
        None => (0, [0.0; 4], [0.0; 4]),
        Some(mx) => match mx.kind {
            MixKind::Dissolve => (1, [mx.t, 0.0, 0.0, 0.0], [0.0; 4]),
            MixKind::Dip(k) => (2, [mx.t, 0.0, 0.0, 0.0], k),
            MixKind::Wipe { dir, softness } => (3, [mx.t, softness, dir[0], dir[1]], [0.0; 4]),
        },
    };
    let (lut, lut_min, lut_max) = match c.lut {
        Some(k) if !c.identity => {
            let t = &luts[k];
            (
                [t.size, lut_offsets[k], 0, 0],
                [t.domain_min[0], t.domain_min[1], t.domain_min[2], 0.0],
                [t.domain_max[0], t.domain_max[1], t.domain_max[2], 0.0],
            )
        }
        _ => ([0; 4], [0.0; 4], [1.0, 1.0, 1.0, 0.0]),
    };
    GpuLayer {
        m0: [m[0], m[1], m[2], l.opacity],
        m1: [m[3], m[4], m[5], 0.0],
        crop: l.crop,
        lift: [c.lift[0], c.lift[1], c.lift[2], c.exposure_gain],
        gamma: [c.gamma[0], c.gamma[1], c.gamma[2], c.saturation],
        gain: [c.gain[0], c.gain[1], c.gain[2], 0.0],
        lut_min,
        lut_max,
        mixp,
        dip,
        info: [
            0,
            width,
            height,
            blend | u32::from(c.identity) << 2 | kind << 3,
        ],
        lut,
    }
}

impl Renderer for GpuRenderer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn render(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        outputs: &[OutputFormat],
    ) -> Result<Vec<Yuv>, String> {
        Ok(self.run(plan, sources, outputs, false)?.1)
    }

    fn render_linear(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
    ) -> Result<LinearImage, String> {
        self.run(plan, sources, &[], true)?
            .0
            .ok_or_else(|| format!("{}: no canvas read back", self.name))
    }

    /// One submission: the canvas is drawn, converted to every format and
    /// read back with them (the trait's default draws, reads the canvas
    /// back, uploads it again and converts it: twice the traffic).
    fn render_with_canvas(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        outputs: &[OutputFormat],
    ) -> Result<(Vec<Yuv>, Arc<LinearImage>), String> {
        let (canvas, pictures) = self.run(plan, sources, outputs, true)?;
        let canvas = canvas.ok_or_else(|| format!("{}: no canvas read back", self.name))?;
        Ok((pictures, Arc::new(canvas)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::plan::{ColourOps, Mix};

    /// A renderer on this machine's adapter (lavapipe in CI), or `None`
    /// (with the reason printed) only when there is no adapter at all.
    fn gpu() -> Option<GpuRenderer> {
        if std::env::var_os("WGPU_BACKEND").is_none() {
            std::env::set_var("WGPU_BACKEND", "vulkan");
        }
        match GpuRenderer::new() {
            Ok(r) => Some(r),
            Err(e) if e.starts_with("no GPU adapter") => {
                println!("skipping the GPU test: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn layer(source: usize, w: u32, h: u32) -> LayerOp {
        LayerOp {
            source,
            inverse: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            crop: [0.0, 0.0, w as f32, h as f32],
            opacity: 1.0,
            blend: BlendMode::Normal,
            colour: ColourOps::IDENTITY,
            mix: None,
        }
    }

    fn plan(w: u32, h: u32, background: [f32; 4], layers: Vec<LayerOp>, n: usize) -> FramePlan {
        FramePlan {
            width: w,
            height: h,
            background,
            layers,
            sources: (0..n)
                .map(|i| SourceKey {
                    id: (0, i),
                    generation: 0,
                })
                .collect(),
            transfer: Transfer::Bt709,
            luts: Arc::new(Vec::new()),
        }
    }

    /// A source whose pixels differ everywhere: (x, y) → distinct values.
    fn ramp(w: u32, h: u32, seed: f32) -> Arc<LinearImage> {
        let mut img = LinearImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let v = (y * w + x) as f32 / (w * h) as f32;
                img.data[(y * w + x) as usize] = [
                    v * 0.9 + 0.05,
                    (1.0 - v) * 0.8 * seed,
                    0.3 * seed + 0.1 * v,
                    1.0,
                ];
            }
        }
        Arc::new(img)
    }

    fn solid(w: u32, h: u32, c: [f32; 4]) -> Arc<LinearImage> {
        Arc::new(LinearImage::filled(w, h, c))
    }

    fn close(a: [f32; 4], b: [f32; 4], tol: f32) -> bool {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[track_caller]
    fn assert_px(img: &LinearImage, x: u32, y: u32, want: [f32; 4], tol: f32) {
        let got = img.data[(y * img.width + x) as usize];
        assert!(
            close(got, want, tol),
            "pixel ({x}, {y}): got {got:?}, want {want:?} (±{tol})"
        );
    }

    #[test]
    fn solid_layers_blend_by_the_formulas() {
        let Some(mut g) = gpu() else { return };
        let b = [0.2f32, 0.1, 0.05, 0.5];
        let s = [0.3f32, 0.45, 0.1, 0.6];
        let straight = |p: [f32; 4]| [p[0] / p[3], p[1] / p[3], p[2] / p[3]];
        let (cs, cb) = (straight(s), straight(b));
        let w3c = |f: &dyn Fn(f32, f32) -> f32| {
            let mut o = [0.0f32; 4];
            for c in 0..3 {
                o[c] = s[c] * (1.0 - b[3]) + b[c] * (1.0 - s[3]) + s[3] * b[3] * f(cb[c], cs[c]);
            }
            o[3] = s[3] + b[3] * (1.0 - s[3]);
            o
        };
        let cases = [
            (
                BlendMode::Normal,
                [
                    s[0] + b[0] * (1.0 - s[3]),
                    s[1] + b[1] * (1.0 - s[3]),
                    s[2] + b[2] * (1.0 - s[3]),
                    s[3] + b[3] * (1.0 - s[3]),
                ],
            ),
            (
                BlendMode::Add,
                [
                    s[0] + b[0],
                    s[1] + b[1],
                    s[2] + b[2],
                    (s[3] + b[3]).min(1.0),
                ],
            ),
            (BlendMode::Multiply, w3c(&|cb, cs| cb * cs)),
            (BlendMode::Screen, w3c(&|cb, cs| cb + cs - cb * cs)),
        ];
        for (mode, want) in cases {
            let mut l = layer(0, 4, 4);
            l.blend = mode;
            let p = plan(4, 4, b, vec![l], 1);
            let out = g.render_linear(&p, &[solid(4, 4, s)]).unwrap();
            for y in 0..4 {
                for x in 0..4 {
                    assert_px(&out, x, y, want, 1e-6);
                }
            }
        }
    }

    #[test]
    fn a_dissolve_at_half_is_the_mean_and_a_dip_at_half_is_the_colour() {
        let Some(mut g) = gpu() else { return };
        let (a, b) = (ramp(8, 6, 1.0), ramp(8, 6, 0.5));
        let mut second = layer(1, 8, 6);
        second.mix = Some(Mix {
            kind: MixKind::Dissolve,
            t: 0.5,
        });
        let p = plan(8, 6, [0.0, 0.0, 0.0, 1.0], vec![layer(0, 8, 6), second], 2);
        let out = g.render_linear(&p, &[a.clone(), b.clone()]).unwrap();
        for i in 0..48 {
            let want: Vec<f32> = (0..4)
                .map(|c| (a.data[i][c] + b.data[i][c]) / 2.0)
                .collect();
            assert_px(
                &out,
                i as u32 % 8,
                i as u32 / 8,
                want.try_into().unwrap(),
                1e-6,
            );
        }
        let k = [0.5, 0.25, 0.1, 1.0];
        second.mix = Some(Mix {
            kind: MixKind::Dip(k),
            t: 0.5,
        });
        let p = plan(8, 6, [0.0, 0.0, 0.0, 1.0], vec![layer(0, 8, 6), second], 2);
        let out = g.render_linear(&p, &[a, b]).unwrap();
        for i in 0..48u32 {
            assert_px(&out, i % 8, i / 8, k, 1e-6);
        }
    }

    #[test]
    fn a_hard_wipe_at_half_splits_the_picture_in_the_middle() {
        let Some(mut g) = gpu() else { return };
        let (ca, cb) = ([0.8, 0.1, 0.1, 1.0], [0.1, 0.1, 0.8, 1.0]);
        for (dir, vertical) in [([1.0, 0.0], false), ([0.0, 1.0], true)] {
            let mut second = layer(1, 16, 10);
            second.mix = Some(Mix {
                kind: MixKind::Wipe { dir, softness: 0.0 },
                t: 0.5,
            });
            let p = plan(16, 10, [0.0; 4], vec![layer(0, 16, 10), second], 2);
            let out = g
                .render_linear(&p, &[solid(16, 10, ca), solid(16, 10, cb)])
                .unwrap();
            for y in 0..10 {
                for x in 0..16 {
                    // The incoming picture has covered the half the edge
                    // has passed (left, or top).
                    let passed = if vertical { y < 5 } else { x < 8 };
                    assert_px(&out, x, y, if passed { cb } else { ca }, 0.0);
                }
            }
        }
    }

    #[test]
    fn transformed_and_cropped_layers_land_on_the_expected_pixels() {
        let Some(mut g) = gpu() else { return };
        let src = ramp(4, 3, 1.0);
        let at = |x: u32, y: u32| src.data[(y * 4 + x) as usize];
        let bg = [0.0f32, 0.0, 0.0, 0.0];
        // Translated by (5, 2).
        let mut l = layer(0, 4, 3);
        l.inverse = [1.0, 0.0, -5.0, 0.0, 1.0, -2.0];
        let out = g
            .render_linear(&plan(12, 8, bg, vec![l], 1), std::slice::from_ref(&src))
            .unwrap();
        for y in 0..8 {
            for x in 0..12 {
                let inside = (5..9).contains(&x) && (2..5).contains(&y);
                let want = if inside { at(x - 5, y - 2) } else { bg };
                assert_px(&out, x, y, want, 1e-6);
            }
        }
        // Scaled 2×: texel centres land between canvas pixels; edges clamp.
        l.inverse = [0.5, 0.0, 0.0, 0.0, 0.5, 0.0];
        let out = g
            .render_linear(&plan(8, 6, bg, vec![l], 1), std::slice::from_ref(&src))
            .unwrap();
        let lerp = |a: [f32; 4], b: [f32; 4], t: f32| -> [f32; 4] {
            std::array::from_fn(|c| a[c] * (1.0 - t) + b[c] * t)
        };
        assert_px(&out, 0, 0, at(0, 0), 1e-6);
        assert_px(&out, 1, 0, lerp(at(0, 0), at(1, 0), 0.25), 1e-6);
        assert_px(&out, 2, 0, lerp(at(0, 0), at(1, 0), 0.75), 1e-6);
        assert_px(&out, 7, 5, at(3, 2), 1e-6);
        // Rotated 90° clockwise: canvas (x, y) shows source (y, H − 1 − x).
        l.inverse = [0.0, 1.0, 0.0, -1.0, 0.0, 3.0];
        let out = g
            .render_linear(&plan(3, 4, bg, vec![l], 1), std::slice::from_ref(&src))
            .unwrap();
        for y in 0..4 {
            for x in 0..3 {
                assert_px(&out, x, y, at(y, 2 - x), 1e-6);
            }
        }
        // Cropped to source pixels 1..3 × 1..3, then scaled 2×: outside the
        // crop is transparent, and sampling never reaches the cropped texels.
        l.crop = [1.0, 1.0, 3.0, 3.0];
        l.inverse = [0.5, 0.0, 0.0, 0.0, 0.5, 0.0];
        let out = g
            .render_linear(&plan(8, 6, bg, vec![l], 1), std::slice::from_ref(&src))
            .unwrap();
        for y in 0..6 {
            for x in 0..8 {
                if !(2..6).contains(&x) || !(2..6).contains(&y) {
                    assert_px(&out, x, y, bg, 0.0);
                }
            }
        }
        assert_px(&out, 2, 2, at(1, 1), 1e-6);
        assert_px(&out, 3, 2, lerp(at(1, 1), at(2, 1), 0.25), 1e-6);
        assert_px(&out, 5, 5, at(2, 2), 1e-6);
    }

    fn ops() -> ColourOps {
        ColourOps {
            identity: false,
            ..ColourOps::IDENTITY
        }
    }

    #[test]
    fn exposure_plus_one_doubles_linear_values() {
        let Some(mut g) = gpu() else { return };
        let src = Arc::new(LinearImage {
            width: 4,
            height: 1,
            data: vec![
                [0.01, 0.1, 0.2, 1.0],
                [0.3, 0.4, 0.05, 1.0],
                [0.1, 0.2, 0.15, 0.5],
                [0.0, 0.0, 0.0, 0.0],
            ],
        });
        for transfer in [Transfer::Bt709, Transfer::Srgb, Transfer::Gamma22] {
            let mut l = layer(0, 4, 1);
            l.colour = ColourOps {
                exposure_gain: 2.0,
                ..ops()
            };
            let mut p = plan(4, 1, [0.0; 4], vec![l], 1);
            p.transfer = transfer;
            let out = g.render_linear(&p, std::slice::from_ref(&src)).unwrap();
            for (x, s) in src.data.iter().enumerate() {
                let want = [s[0] * 2.0, s[1] * 2.0, s[2] * 2.0, s[3]];
                // Relative error of an OETF/EOTF round trip in f32.
                assert_px(&out, x as u32, 0, want, 2e-5);
            }
        }
    }

    fn lut(n: u32, f: impl Fn([f32; 3]) -> [f32; 3]) -> Lut3d {
        let mut data = Vec::new();
        let s = (n - 1) as f32;
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    data.push(f([r as f32 / s, g as f32 / s, b as f32 / s]));
                }
            }
        }
        Lut3d {
            size: n,
            domain_min: [0.0; 3],
            domain_max: [1.0; 3],
            data,
        }
    }

    #[test]
    fn an_identity_lut_changes_nothing_and_a_known_lut_maps_known_colours() {
        let Some(mut g) = gpu() else { return };
        let src = ramp(16, 16, 0.8);
        let luts = Arc::new(vec![
            lut(17, |c| c),
            lut(5, |c| [c[0] * c[0], c[1] * c[1], c[2] * c[2]]),
            lut(9, |c| [1.0 - c[2], c[1], 1.0 - c[0]]),
        ]);
        let with = |lut: Option<usize>, transfer: Transfer, src: Arc<LinearImage>| {
            let mut l = layer(0, src.width, src.height);
            l.colour = ColourOps { lut, ..ops() };
            let mut p = plan(src.width, src.height, [0.0; 4], vec![l], 1);
            p.transfer = transfer;
            p.luts = luts.clone();
            (p, src)
        };
        // Identity LUT against the same operations without a LUT.
        let (p0, s) = with(None, Transfer::Bt709, src.clone());
        let base = g.render_linear(&p0, &[s]).unwrap();
        let (p1, s) = with(Some(0), Transfer::Bt709, src.clone());
        let lutted = g.render_linear(&p1, &[s]).unwrap();
        for (a, b) in base.data.iter().zip(&lutted.data) {
            assert!(close(*a, *b, 1e-5), "{a:?} vs {b:?}");
        }
        // In linear transfer the LUT sees the linear values directly.
        let c = Arc::new(LinearImage {
            width: 2,
            height: 1,
            data: vec![[0.25, 0.5, 0.75, 1.0], [0.3, 0.55, 0.9, 1.0]],
        });
        // Squares, at grid points (exact for tetrahedral interpolation).
        let (p, s) = with(Some(1), Transfer::Linear, c.clone());
        let out = g.render_linear(&p, &[s]).unwrap();
        assert_px(&out, 0, 0, [0.0625, 0.25, 0.5625, 1.0], 1e-6);
        // A linear map (channel swap and invert), exact everywhere.
        let (p, s) = with(Some(2), Transfer::Linear, c);
        let out = g.render_linear(&p, &[s]).unwrap();
        assert_px(&out, 0, 0, [0.25, 0.5, 0.75, 1.0], 1e-6);
        assert_px(&out, 1, 0, [0.1, 0.55, 0.7, 1.0], 1e-6);
    }

    #[test]
    fn frames_with_more_sources_than_slots_draw_in_batches() {
        let Some(mut g) = gpu() else { return };
        let n = 7;
        let layers: Vec<LayerOp> = (0..n)
            .map(|i| {
                let mut l = layer(i, 2, 2);
                l.blend = BlendMode::Add;
                l
            })
            .collect();
        let srcs: Vec<_> = (0..n)
            .map(|i| solid(2, 2, [0.01 * (i + 1) as f32, 0.02, 0.0, 0.1]))
            .collect();
        let out = g
            .render_linear(&plan(2, 2, [0.0; 4], layers, n), &srcs)
            .unwrap();
        // 0.01·(1 + … + 7), 7·0.02, alpha 0.7.
        assert_px(&out, 1, 1, [0.28, 0.14, 0.0, 0.7], 1e-6);
    }

    #[test]
    fn sources_stay_resident_until_a_frame_stops_using_them() {
        let Some(mut g) = gpu() else { return };
        let srcs = [solid(2, 2, [0.1, 0.1, 0.1, 1.0]), solid(2, 2, [0.2; 4])];
        let mut p = plan(2, 2, [0.0; 4], vec![layer(0, 2, 2), layer(1, 2, 2)], 2);
        g.render_linear(&p, &srcs).unwrap();
        g.render_linear(&p, &srcs).unwrap();
        assert_eq!(g.uploads(), 2);
        // A new media frame: one upload, the old generation dropped.
        p.sources[1].generation = 1;
        let next = solid(2, 2, [0.4, 0.4, 0.4, 1.0]);
        let out = g.render_linear(&p, &[srcs[0].clone(), next]).unwrap();
        assert_eq!((g.uploads(), g.resident_sources()), (3, 2));
        assert_px(&out, 0, 0, [0.4, 0.4, 0.4, 1.0], 1e-6);
        // A frame with one source drops the other.
        let p = plan(2, 2, [0.0; 4], vec![layer(0, 2, 2)], 1);
        g.render_linear(&p, &srcs[..1]).unwrap();
        assert_eq!((g.uploads(), g.resident_sources()), (3, 1));
    }

    fn bt709_eotf(e: f64) -> f64 {
        if e < 0.081 {
            e / 4.5
        } else {
            ((e + 0.099) / 1.099).powf(1.0 / 0.45)
        }
    }

    fn format(w: u32, h: u32, pix_fmt: u32, dither: bool) -> OutputFormat {
        OutputFormat {
            width: w,
            height: h,
            pix_fmt,
            primaries: 1,
            transfer: 1,
            matrix: 1,
            range: 1,
            dither,
        }
    }

    /// 75 % bars (white, yellow, cyan, green, magenta, red, blue), each
    /// `bw` pixels wide, as a linear canvas source.
    fn bars75(bw: u32, h: u32) -> Arc<LinearImage> {
        let l = bt709_eotf(0.75) as f32;
        let bars = [
            [l, l, l],
            [l, l, 0.0],
            [0.0, l, l],
            [0.0, l, 0.0],
            [l, 0.0, l],
            [l, 0.0, 0.0],
            [0.0, 0.0, l],
        ];
        let w = bw * 7;
        let mut img = LinearImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let c = bars[(x / bw) as usize];
                img.data[(y * w + x) as usize] = [c[0], c[1], c[2], 1.0];
            }
        }
        Arc::new(img)
    }

    /// ITU-R BT.709 75 % bars in 8-bit limited range (Y, Cb, Cr).
    const BARS_709: [[u8; 3]; 7] = [
        [180, 128, 128],
        [168, 44, 136],
        [145, 147, 44],
        [133, 63, 52],
        [63, 193, 204],
        [51, 109, 212],
        [28, 212, 120],
    ];

    #[test]
    fn bt709_limited_8_bit_bars_give_the_standard_codes() {
        let Some(mut g) = gpu() else { return };
        let (bw, h) = (8u32, 6u32);
        let src = bars75(bw, h);
        let w = bw * 7;
        let p = plan(w, h, [0.0; 4], vec![layer(0, w, h)], 1);
        let out = g
            .render(
                &p,
                &[src],
                &[
                    format(w, h, pix::YUV420P, false),
                    format(w, h, pix::YUV444P, true),
                    // Downscaled: flat bars keep their codes away from edges.
                    format(w / 2, h / 2, pix::YUV420P, false),
                ],
            )
            .unwrap();
        let f = &out[0];
        assert_eq!((f.width, f.height, f.planes.len()), (w, h, 3));
        assert_eq!(f.planes[1].len(), (w as usize / 2) * (h as usize / 2));
        for (bar, want) in BARS_709.iter().enumerate() {
            for y in 0..h as usize {
                for x in bar * bw as usize..(bar + 1) * bw as usize {
                    assert_eq!(f.planes[0][y * w as usize + x], want[0], "Y of bar {bar}");
                    let ci = (y / 2) * (w as usize / 2) + x / 2;
                    assert_eq!(f.planes[1][ci], want[1], "Cb of bar {bar}");
                    assert_eq!(f.planes[2][ci], want[2], "Cr of bar {bar}");
                }
            }
        }
        // Dithered: every code within one of the standard one.
        let d = &out[1];
        for (p, plane) in d.planes.iter().enumerate() {
            for (i, &v) in plane.iter().enumerate() {
                let bar = (i % w as usize) / bw as usize;
                assert!(
                    (v as i32 - BARS_709[bar][p] as i32).abs() <= 1,
                    "plane {p} sample {i}: {v}"
                );
            }
        }
        let s = &out[2];
        let sw = (w / 2) as usize;
        for (bar, want) in BARS_709.iter().enumerate() {
            // Centre column of each half-width bar.
            let x = bar * 4 + 2;
            assert_eq!(s.planes[0][sw + x], want[0], "downscaled Y of bar {bar}");
        }
    }

    #[test]
    fn a_10_bit_alpha_format_carries_alpha() {
        let Some(mut g) = gpu() else { return };
        let l = bt709_eotf(0.75) as f32;
        // Straight 75 % white at alphas 1, 0.25 and 0 (premultiplied here).
        let src = Arc::new(LinearImage {
            width: 3,
            height: 1,
            data: vec![
                [l, l, l, 1.0],
                [l * 0.25, l * 0.25, l * 0.25, 0.25],
                [0.0; 4],
            ],
        });
        let p = plan(3, 1, [0.0; 4], vec![layer(0, 3, 1)], 1);
        let out = g
            .render(&p, &[src], &[format(3, 1, pix::YUVA444P10, false)])
            .unwrap();
        let f = &out[0];
        assert_eq!(f.planes.len(), 4);
        let sample =
            |p: usize, x: usize| u16::from_le_bytes([f.planes[p][2 * x], f.planes[p][2 * x + 1]]);
        assert_eq!([sample(3, 0), sample(3, 1), sample(3, 2)], [1023, 256, 0]);
        // Colour is straight: 75 % white ((16 + 219 · 0.75) · 4) wherever alpha is not 0.
        assert_eq!([sample(0, 0), sample(0, 1), sample(0, 2)], [721, 721, 64]);
        assert_eq!([sample(1, 0), sample(2, 1)], [512, 512]);
    }

    /// The canvas and the pictures of one submission are what drawing and
    /// converting separately give (and a duplicate format is converted
    /// once, in the caller's order).
    #[test]
    fn the_canvas_and_its_conversions_come_back_from_one_submission() {
        let Some(mut g) = gpu() else { return };
        let (w, h) = (24, 10);
        let mut pip = layer(1, 12, 6);
        pip.inverse = [0.5, 0.0, -3.0, 0.0, 0.5, -1.0];
        pip.opacity = 0.7;
        let p = plan(w, h, [0.1, 0.2, 0.3, 0.9], vec![layer(0, w, h), pip], 2);
        let srcs = [ramp(w, h, 0.2), ramp(12, 6, 0.7)];
        let formats = [
            format(w, h, pix::YUV420P, true),
            format(w / 2, h / 2, pix::YUV422P10, false),
            format(w, h, pix::YUVA444P10, true),
            format(w, h, pix::YUV420P, true),
        ];
        let (pictures, canvas) = g.render_with_canvas(&p, &srcs, &formats).unwrap();
        let drawn = g.render_linear(&p, &srcs).unwrap();
        let bits = |i: &LinearImage| -> Vec<[u32; 4]> {
            i.data.iter().map(|p| p.map(f32::to_bits)).collect()
        };
        assert_eq!((canvas.width, canvas.height), (w, h));
        assert_eq!(bits(&canvas), bits(&drawn));
        assert_eq!(pictures, g.render(&p, &srcs, &formats).unwrap());
        let copy = crate::render::cpu::copy_plan(&drawn, p.transfer, 99);
        let separately = g.render(&copy, &[Arc::new(drawn)], &formats).unwrap();
        assert_eq!(pictures, separately);
        assert_eq!(pictures[0], pictures[3]);
        assert_eq!(pictures[1].width, w / 2);
    }

    #[test]
    fn bt709_to_bt2020_is_the_bt2087_matrix() {
        // ITU-R BT.2087-0, equation (4), to its four decimals.
        let want = [
            [0.6274, 0.3293, 0.0433],
            [0.0691, 0.9195, 0.0114],
            [0.0164, 0.0880, 0.8956],
        ];
        let m = primaries_matrix(Primaries::Bt709, 9).unwrap();
        for r in 0..3 {
            for c in 0..3 {
                assert!((m[r][c] - want[r][c]).abs() < 6e-5, "{m:?}");
            }
        }
        assert_eq!(
            primaries_matrix(Primaries::Bt709, 1).unwrap()[1],
            [0.0, 1.0, 0.0]
        );
        assert!(primaries_matrix(Primaries::Bt709, 22).is_err());
    }

    /// Timing of a 1920×1080 frame with three layers (a full-frame clip, a
    /// graded picture-in-picture with a 33³ LUT, a screen-blended overlay)
    /// and one 1080p yuv420p output. Lavapipe runs on the CPU: this proves
    /// the path, not GPU speed. Run with `--ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing_1080p_three_layers() {
        let Some(mut g) = gpu() else { return };
        let (w, h) = (1920u32, 1080u32);
        let mut pip = layer(1, w, h);
        pip.inverse = [2.0, 0.0, -1920.0, 0.0, 2.0, -1080.0];
        pip.colour = ColourOps {
            identity: false,
            exposure_gain: 1.2,
            lift: [0.02, 0.0, -0.01],
            gamma: [1.1, 1.0, 0.9],
            gain: [1.0, 0.95, 1.05],
            saturation: 1.2,
            lut: Some(0),
        };
        let mut top = layer(2, w, h);
        top.blend = BlendMode::Screen;
        top.opacity = 0.5;
        let mut p = plan(
            w,
            h,
            [0.0, 0.0, 0.0, 1.0],
            vec![layer(0, w, h), pip, top],
            3,
        );
        p.luts = Arc::new(vec![lut(33, |c| [c[0].powf(1.1), c[1], c[2] * 0.9])]);
        let srcs = [ramp(w, h, 1.0), ramp(w, h, 0.6), ramp(w, h, 0.3)];
        let out = [format(w, h, pix::YUV420P, true)];
        let t = std::time::Instant::now();
        g.render(&p, &srcs, &out).unwrap();
        println!(
            "{}: first frame (uploads 3 sources) {:.1} ms",
            g.name(),
            t.elapsed().as_secs_f64() * 1e3
        );
        let n = 10;
        let t = std::time::Instant::now();
        for _ in 0..n {
            g.render(&p, &srcs, &out).unwrap();
        }
        println!(
            "resident sources: {:.1} ms/frame",
            t.elapsed().as_secs_f64() * 1e3 / n as f64
        );
        let t = std::time::Instant::now();
        for i in 0..n {
            p.sources[0].generation = 1 + i as u64;
            g.render(&p, &srcs, &out).unwrap();
        }
        println!(
            "one new media frame per frame: {:.1} ms/frame",
            t.elapsed().as_secs_f64() * 1e3 / n as f64
        );
        let mut time = |what: &str, p: &FramePlan, out: &[OutputFormat]| {
            let t = std::time::Instant::now();
            for _ in 0..3 {
                if out.is_empty() {
                    g.render_linear(p, &srcs).unwrap();
                } else {
                    g.render(p, &srcs, out).unwrap();
                }
            }
            println!(
                "{what}: {:.1} ms/frame",
                t.elapsed().as_secs_f64() * 1e3 / 3.0
            );
        };
        time("render_linear (canvas readback)", &p, &[]);
        let mut plain = p.clone();
        plain.layers.truncate(1);
        time("one plain layer, canvas readback", &plain, &[]);
        time("one plain layer + yuv420p", &plain, &out);
        let mut no_ops = p.clone();
        no_ops.layers[1].colour = ColourOps::IDENTITY;
        time(
            "three layers without colour ops, canvas readback",
            &no_ops,
            &[],
        );
    }

    #[test]
    #[ignore]
    fn timing_scaling_probe() {
        let Some(mut g) = gpu() else { return };
        for (w, h) in [(480u32, 270u32), (960, 540), (1920, 1080)] {
            let srcs = [ramp(w, h, 1.0)];
            for (what, layers) in [
                ("background only", vec![]),
                ("one layer", vec![layer(0, w, h)]),
            ] {
                let p = plan(w, h, [0.0, 0.0, 0.0, 1.0], layers, 1);
                g.render_linear(&p, &srcs).unwrap();
                let t = std::time::Instant::now();
                for _ in 0..3 {
                    g.render_linear(&p, &srcs).unwrap();
                }
                println!(
                    "{w}x{h} {what}: {:.1} ms/frame",
                    t.elapsed().as_secs_f64() * 1e3 / 3.0
                );
                let t = std::time::Instant::now();
                for _ in 0..3 {
                    g.render(&p, &srcs, &[]).unwrap();
                }
                println!(
                    "{w}x{h} {what}, no readback: {:.1} ms/frame",
                    t.elapsed().as_secs_f64() * 1e3 / 3.0
                );
            }
        }
    }
}
