// syncframe's built-in mesh viewer: reads the textured GLB syncframe writes (one mesh, one
// primitive with POSITION, TEXCOORD_0, indices and a base-colour image) and draws it with WebGL 2,
// shaded by face normals, orbiting on drag. No dependencies, so viewer.html works without the npm
// build; the three.js page replaces it when `npm --prefix viewer run build` has been run.
window.syncframeMeshViewer = (container, glbBase64, caption) => {
  const { canvas, gl } = window.syncframeStage(container, caption, 'webgl2', 'open mesh.glb in a 3D viewer instead.');
  if (!gl) return;

  // -- the GLB: a JSON chunk and a binary chunk -------------------------------------------------
  const bytes = Uint8Array.from(atob(glbBase64), (c) => c.charCodeAt(0));
  const data = new DataView(bytes.buffer);
  let json = null;
  let bin = null;
  for (let offset = 12; offset < data.byteLength;) {
    const length = data.getUint32(offset, true);
    const type = data.getUint32(offset + 4, true);
    const chunk = bytes.slice(offset + 8, offset + 8 + length);
    if (type === 0x4e4f534a) json = JSON.parse(new TextDecoder().decode(chunk));
    if (type === 0x004e4942) bin = chunk;
    offset += 8 + length;
  }
  const viewBytes = (index) => {
    const view = json.bufferViews[index];
    return bin.slice(view.byteOffset || 0, (view.byteOffset || 0) + view.byteLength);
  };
  const accessor = (index) => {
    const a = json.accessors[index];
    const Type = { 5126: Float32Array, 5125: Uint32Array, 5123: Uint16Array, 5121: Uint8Array }[a.componentType];
    const size = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 }[a.type];
    const raw = viewBytes(a.bufferView);
    return new Type(raw.buffer, a.byteOffset || 0, a.count * size);
  };
  const primitive = json.meshes[0].primitives[0];
  const positions = accessor(primitive.attributes.POSITION);
  const uvs = accessor(primitive.attributes.TEXCOORD_0);
  const indices = new Uint32Array(accessor(primitive.indices));
  const material = json.materials[primitive.material].pbrMetallicRoughness.baseColorTexture;
  const picture = json.images[json.textures[material.index].source];

  // -- shaders: texture colour times a two-sided diffuse term of the face normal ----------------
  const program = window.syncframeProgram(gl, `#version 300 es
    in vec3 position; in vec2 uv; uniform mat4 transform; out vec2 vUv; out vec3 vWorld;
    void main() { vUv = uv; vWorld = position; gl_Position = transform * vec4(position, 1.0); }`,
    `#version 300 es
    precision highp float;
    in vec2 vUv; in vec3 vWorld; uniform sampler2D image; uniform vec3 light; out vec4 color;
    void main() {
      vec3 normal = normalize(cross(dFdx(vWorld), dFdy(vWorld)));
      float shade = 0.35 + 0.65 * abs(dot(normal, light));
      color = vec4(texture(image, vUv).rgb * shade, 1.0);
    }`);
  const attribute = (name, values, size) => {
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, values, gl.STATIC_DRAW);
    const where = gl.getAttribLocation(program, name);
    gl.enableVertexAttribArray(where);
    gl.vertexAttribPointer(where, size, gl.FLOAT, false, 0, 0);
  };
  gl.bindVertexArray(gl.createVertexArray());
  attribute('position', positions, 3);
  attribute('uv', uvs, 2);
  gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, indices, gl.STATIC_DRAW);
  gl.enable(gl.DEPTH_TEST);

  // -- the camera: orbit about the bounding-box centre ------------------------------------------
  const low = [Infinity, Infinity, Infinity];
  const high = [-Infinity, -Infinity, -Infinity];
  for (let i = 0; i < positions.length; i += 3) {
    for (let k = 0; k < 3; k++) {
      low[k] = Math.min(low[k], positions[i + k]);
      high[k] = Math.max(high[k], positions[i + k]);
    }
  }
  const centre = low.map((v, k) => (v + high[k]) / 2);
  const radius = Math.hypot(...high.map((v, k) => v - low[k])) / 2 || 1;
  const orbit = { azimuth: 0.5, elevation: 0.35, distance: 2.8 * radius };

  const matrix = () => {
    const aspect = canvas.width / canvas.height;
    const f = 1 / Math.tan((45 * Math.PI) / 360);
    const near = orbit.distance / 100;
    const far = orbit.distance * 10;
    const ca = Math.cos(orbit.azimuth), sa = Math.sin(orbit.azimuth);
    const ce = Math.cos(orbit.elevation), se = Math.sin(orbit.elevation);
    const back = [ce * sa, se, ce * ca];
    const right = [ca, 0, -sa];
    const up = [-se * sa, ce, -se * ca];
    const eye = centre.map((c, k) => c + back[k] * orbit.distance);
    const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    // view rows (right, up, back) then perspective; column-major for WebGL
    const rows = [right, up, back].map((axis) => [...axis, -dot(axis, eye)]);
    const p = [[f / aspect, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), (2 * far * near) / (near - far)],
      [0, 0, -1, 0]];
    const view = [...rows, [0, 0, 0, 1]];
    const out = new Float32Array(16);
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < 4; c++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += p[r][k] * view[k][c];
        out[c * 4 + r] = sum;
      }
    }
    return { transform: out, light: back };
  };
  let ready = false;
  const draw = () => {
    const scale = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, canvas.clientWidth * scale);
    canvas.height = Math.max(1, canvas.clientHeight * scale);
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.93, 0.93, 0.93, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    const { transform, light } = matrix();
    gl.uniformMatrix4fv(gl.getUniformLocation(program, 'transform'), false, transform);
    gl.uniform3fv(gl.getUniformLocation(program, 'light'), light);
    gl.drawElements(gl.TRIANGLES, indices.length, gl.UNSIGNED_INT, 0);
  };
  const redraw = () => { if (ready) requestAnimationFrame(draw); };

  const image = new Image();
  image.onload = () => {
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, image);
    gl.generateMipmap(gl.TEXTURE_2D);
    ready = true;
    draw();
    requestAnimationFrame(() => requestAnimationFrame(() => { document.body.dataset.rendered = 'true'; }));
  };
  image.src = URL.createObjectURL(new Blob([viewBytes(picture.bufferView)], { type: picture.mimeType }));

  window.syncframeInput(canvas, (dx, dy) => {
    orbit.azimuth -= dx * 0.01;
    orbit.elevation = Math.max(-1.5, Math.min(1.5, orbit.elevation + dy * 0.01));
  }, (factor) => { orbit.distance = Math.max(radius * 1.2, Math.min(radius * 20, orbit.distance * factor)); }, redraw);
};
