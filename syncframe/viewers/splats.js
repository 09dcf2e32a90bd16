// syncframe's built-in splat viewer: reads the binary 3DGS PLY syncframe writes and draws every
// Gaussian as an instanced quad shaped by its projected 2-D covariance (EWA splatting), composited
// front to back with WebGL 2, orbiting on drag. No dependencies; it is the splat page in every build.
window.syncframeSplatViewer = (container, plyBase64, caption, options = {}) => {
  const { canvas, gl } = window.syncframeStage(container, caption, 'webgl2', 'open splats.ply in a splat viewer instead.',
    '#ddd');
  if (!gl) return;

  // -- the PLY: an ASCII header, then one little-endian record per splat --------------------------
  const bytes = Uint8Array.from(atob(plyBase64), (c) => c.charCodeAt(0));
  const headerEnd = new TextDecoder().decode(bytes.subarray(0, 4096)).indexOf('end_header\n') + 11;
  const header = new TextDecoder().decode(bytes.subarray(0, headerEnd)).split('\n');
  const sizes = { float: 4, float32: 4, double: 8, float64: 8, uchar: 1, uint8: 1, char: 1, int8: 1, short: 2,
    int16: 2, ushort: 2, uint16: 2, int: 4, int32: 4, uint: 4, uint32: 4 };
  const offsets = {};
  let stride = 0;
  let count = 0;
  for (const line of header) {
    const words = line.trim().split(/\s+/);
    if (words[0] === 'element') count = words[1] === 'vertex' ? Number(words[2]) : count;
    if (words[0] === 'property') { offsets[words[2]] = stride; stride += sizes[words[1]]; }
  }
  const data = new DataView(bytes.buffer, headerEnd);
  const read = (i, name) => data.getFloat32(i * stride + offsets[name], true);

  // Per splat: centre (3), colour + opacity (4), world covariance (6: xx xy xz yy yz zz).
  const SH_C0 = 0.28209479177387814;
  const centres = new Float32Array(count * 3);
  const looks = new Float32Array(count * 4);
  const covariances = new Float32Array(count * 6);
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < 3; k++) {
      centres[i * 3 + k] = read(i, 'xyz'[k]);
      looks[i * 4 + k] = Math.min(1, Math.max(0, 0.5 + SH_C0 * read(i, `f_dc_${k}`)));
    }
    looks[i * 4 + 3] = 1 / (1 + Math.exp(-read(i, 'opacity')));
    let [w, x, y, z] = [0, 1, 2, 3].map((k) => read(i, `rot_${k}`));
    const norm = Math.hypot(w, x, y, z) || 1;
    [w, x, y, z] = [w / norm, x / norm, y / norm, z / norm];
    const R = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
      2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
      2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)];
    const s = [0, 1, 2].map((k) => Math.exp(read(i, `scale_${k}`)));
    const M = R.map((v, k) => v * s[k % 3]); // R · diag(s), row-major
    const cov = (a, b) => M[a * 3] * M[b * 3] + M[a * 3 + 1] * M[b * 3 + 1] + M[a * 3 + 2] * M[b * 3 + 2];
    covariances.set([cov(0, 0), cov(0, 1), cov(0, 2), cov(1, 1), cov(1, 2), cov(2, 2)], i * 6);
  }

  // -- shaders: each instance a quad spanning 3σ of its 2-D Gaussian --------------------------------
  const program = window.syncframeProgram(gl, `#version 300 es
    in vec2 corner; in vec3 centre; in vec4 look; in vec3 covA; in vec3 covB;
    uniform mat4 view; uniform vec2 focal; uniform vec2 viewport;
    out vec4 vLook; out vec2 vOffset;
    void main() {
      vec4 p = view * vec4(centre, 1.0);
      if (p.z > -1e-3) { gl_Position = vec4(0.0, 0.0, 2.0, 1.0); return; }
      mat3 S = mat3(covA.x, covA.y, covA.z, covA.y, covB.x, covB.y, covA.z, covB.y, covB.z);
      float z = -p.z;
      mat3 J = mat3(focal.x / z, 0.0, 0.0, 0.0, focal.y / z, 0.0, focal.x * p.x / (z * z), focal.y * p.y / (z * z), 0.0);
      mat3 T = J * mat3(view);
      mat3 C = T * S * transpose(T);
      float a = C[0][0] + 0.3, b = C[0][1], c = C[1][1] + 0.3;
      float mid = 0.5 * (a + c), r = length(vec2(0.5 * (a - c), b));
      float l1 = mid + r, l2 = max(mid - r, 0.1);
      vec2 e1 = normalize(abs(b) > 1e-6 ? vec2(b, l1 - a) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0)));
      vec2 e2 = vec2(-e1.y, e1.x);
      vec2 pixels = 3.0 * (corner.x * sqrt(l1) * e1 + corner.y * sqrt(l2) * e2);
      vec2 ndc = vec2(focal.x * p.x / z, focal.y * p.y / z) / (0.5 * viewport);
      gl_Position = vec4(ndc + pixels / (0.5 * viewport), 0.0, 1.0);
      vLook = look; vOffset = 3.0 * corner;
    }`,
    `#version 300 es
    precision highp float;
    in vec4 vLook; in vec2 vOffset; out vec4 color;
    void main() {
      float alpha = min(0.999, vLook.a * exp(-0.5 * dot(vOffset, vOffset)));
      if (alpha < 1.0 / 255.0) discard;
      color = vec4(vLook.rgb * alpha, alpha);
    }`);
  gl.bindVertexArray(gl.createVertexArray());
  const attribute = (name, values, size, divisor) => {
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, values, gl.DYNAMIC_DRAW);
    const where = gl.getAttribLocation(program, name);
    gl.enableVertexAttribArray(where);
    gl.vertexAttribPointer(where, size, gl.FLOAT, false, 0, 0);
    gl.vertexAttribDivisor(where, divisor);
    return buffer;
  };
  attribute('corner', new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), 2, 0);
  const sorted = { centre: new Float32Array(count * 3), look: new Float32Array(count * 4),
    covA: new Float32Array(count * 3), covB: new Float32Array(count * 3) };
  const buffers = { centre: attribute('centre', sorted.centre, 3, 1), look: attribute('look', sorted.look, 4, 1),
    covA: attribute('covA', sorted.covA, 3, 1), covB: attribute('covB', sorted.covB, 3, 1) };
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.ONE_MINUS_DST_ALPHA, gl.ONE); // front to back, "under" compositing of premultiplied colour

  // -- the camera: orbit about the splats' centre, framed from their bounds ----------------------------
  // The bounds are the opaque splats' centres grown by 2σ of each splat's largest axis (faint
  // floaters are left out, as the app's rig leaves them out); the starting distance fits that
  // sphere inside the narrower of the page's two fields of view, so no window shape cuts it off.
  const up = options.up === 'z' ? [0, 0, 1] : [0, 1, 0];
  const opaque = [];
  for (let i = 0; i < count; i++) if (looks[i * 4 + 3] >= 0.1) opaque.push(i);
  const members = opaque.length ? opaque : [...Array(count).keys()];
  const low = [Infinity, Infinity, Infinity];
  const high = [-Infinity, -Infinity, -Infinity];
  for (const i of members) for (let k = 0; k < 3; k++) {
    low[k] = Math.min(low[k], centres[i * 3 + k]);
    high[k] = Math.max(high[k], centres[i * 3 + k]);
  }
  const target = options.target || low.map((v, k) => (v + high[k]) / 2);
  let spread = 0;
  for (const i of members) {
    const c = covariances.subarray(i * 6, i * 6 + 6); // the largest axis is at most sqrt of the trace
    const sigma = Math.sqrt(Math.max(0, c[0] + c[3] + c[5]));
    spread = Math.max(spread, Math.hypot(...[0, 1, 2].map((k) => centres[i * 3 + k] - target[k])) + 2 * sigma);
  }
  spread = spread || 1;
  const VERTICAL_FOV = (45 * Math.PI) / 180;
  const fitDistance = () => { // the bounding sphere inside the narrower field of view, 8% to spare
    const aspect = Math.max(1e-3, canvas.clientWidth / Math.max(1, canvas.clientHeight));
    const half = Math.min(VERTICAL_FOV / 2, Math.atan(Math.tan(VERTICAL_FOV / 2) * aspect));
    return (1.08 * spread) / Math.sin(half);
  };
  const start = options.eye || target.map((t, k) => t + (up[1] ? [0, 0.45, 1][k] : [0, -1, 0.45][k]));
  const offset = start.map((v, k) => v - target[k]);
  const orbit = { distance: fitDistance(), azimuth: 0, elevation: 0, zoomed: false };
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const unit = (a) => { const n = Math.hypot(...a) || 1; return a.map((v) => v / n); };
  { // the starting direction as azimuth / elevation about ``up``
    const back = unit(offset);
    orbit.elevation = Math.asin(Math.max(-1, Math.min(1, dot(back, up))));
    const side = up[1] ? [back[0], back[2]] : [back[0], -back[1]];
    orbit.azimuth = Math.atan2(side[0], side[1]);
  }
  const eyeOf = () => {
    const ce = Math.cos(orbit.elevation), se = Math.sin(orbit.elevation);
    const sa = Math.sin(orbit.azimuth), ca = Math.cos(orbit.azimuth);
    const back = up[1] ? [ce * sa, se, ce * ca] : [ce * sa, -ce * ca, se];
    return target.map((t, k) => t + back[k] * orbit.distance);
  };

  const draw = () => {
    if (!orbit.zoomed) orbit.distance = fitDistance(); // follows the window's shape until the user zooms
    const scale = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, canvas.clientWidth * scale);
    canvas.height = Math.max(1, canvas.clientHeight * scale);
    gl.viewport(0, 0, canvas.width, canvas.height);
    const eye = eyeOf();
    const back = unit(eye.map((v, k) => v - target[k]));
    const right = unit(cross(up, back));
    const top = cross(back, right);
    const view = new Float32Array(16); // column-major rows (right, top, back) · (p − eye)
    [right, top, back].forEach((axis, r) => { axis.forEach((v, c) => { view[c * 4 + r] = v; }); view[12 + r] = -dot(axis, eye); });
    view[15] = 1;
    // front to back by view depth
    const depth = new Float32Array(count);
    for (let i = 0; i < count; i++) depth[i] = -dot(back, [centres[i * 3] - eye[0], centres[i * 3 + 1] - eye[1], centres[i * 3 + 2] - eye[2]]);
    const order = new Uint32Array(count).map((_, i) => i).sort((a, b) => depth[a] - depth[b]);
    order.forEach((i, j) => {
      sorted.centre.set(centres.subarray(i * 3, i * 3 + 3), j * 3);
      sorted.look.set(looks.subarray(i * 4, i * 4 + 4), j * 4);
      sorted.covA.set(covariances.subarray(i * 6, i * 6 + 3), j * 3);
      sorted.covB.set(covariances.subarray(i * 6 + 3, i * 6 + 6), j * 3);
    });
    for (const name of Object.keys(buffers)) {
      gl.bindBuffer(gl.ARRAY_BUFFER, buffers[name]);
      gl.bufferData(gl.ARRAY_BUFFER, sorted[name], gl.DYNAMIC_DRAW);
    }
    const f = 0.5 * canvas.height / Math.tan((45 * Math.PI) / 360);
    gl.uniformMatrix4fv(gl.getUniformLocation(program, 'view'), false, view);
    gl.uniform2f(gl.getUniformLocation(program, 'focal'), f, f);
    gl.uniform2f(gl.getUniformLocation(program, 'viewport'), canvas.width, canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, count);
  };
  let pending = false;
  const redraw = () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } };
  container.style.background = '#111';
  draw();
  requestAnimationFrame(() => requestAnimationFrame(() => { document.body.dataset.rendered = 'true'; }));

  window.syncframeInput(canvas, (dx, dy) => {
    orbit.azimuth -= dx * 0.01;
    orbit.elevation = Math.max(-1.5, Math.min(1.5, orbit.elevation + dy * 0.01));
  }, (factor) => {
    orbit.zoomed = true;
    orbit.distance = Math.max(spread * 0.5, Math.min(spread * 40, orbit.distance * factor));
  }, redraw);
};
