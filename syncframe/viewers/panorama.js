// syncframe's built-in 360° viewer: one WebGL shader that looks up the equirect image along each
// pixel's view ray. No dependencies, so viewer.html works without the npm build; the richer
// Photo Sphere Viewer page replaces it when `npm --prefix viewer run build` has been run.
// Conventions (as the equirect space): column 0 is longitude -180°, row 0 latitude +90°;
// yaw turns right, pitch looks up.
window.syncframeViewer = (container, panorama, caption) => {
  const { canvas, gl } = window.syncframeStage(container, caption, 'webgl', 'open equirect.png instead.', '#fff');
  if (!gl) return;
  const program = window.syncframeProgram(gl,
    'attribute vec2 p; varying vec2 q; void main() { q = p; gl_Position = vec4(p, 0.0, 1.0); }',
    `
    precision highp float;
    varying vec2 q;
    uniform sampler2D image;
    uniform float yaw, pitch, tanHalf, aspect;
    const float PI = 3.141592653589793;
    void main() {
      vec3 d = normalize(vec3(q.x * tanHalf * aspect, q.y * tanHalf, 1.0));
      float cp = cos(pitch), sp = sin(pitch), cy = cos(yaw), sy = sin(yaw);
      d = vec3(d.x, d.y * cp + d.z * sp, -d.y * sp + d.z * cp);
      d = vec3(d.x * cy + d.z * sy, d.y, -d.x * sy + d.z * cy);
      vec2 uv = vec2(atan(d.x, d.z) / (2.0 * PI) + 0.5, 0.5 - asin(clamp(d.y, -1.0, 1.0)) / PI);
      gl_FragColor = texture2D(image, uv);
    }`);
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 3, -1, -1, 3]), gl.STATIC_DRAW);
  const where = gl.getAttribLocation(program, 'p');
  gl.enableVertexAttribArray(where);
  gl.vertexAttribPointer(where, 2, gl.FLOAT, false, 0, 0);
  const uniform = (name) => gl.getUniformLocation(program, name);
  const view = { yaw: 0, pitch: 0, fov: 75 };
  let ready = false;

  const draw = () => {
    const scale = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, canvas.clientWidth * scale);
    canvas.height = Math.max(1, canvas.clientHeight * scale);
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.uniform1f(uniform('yaw'), view.yaw);
    gl.uniform1f(uniform('pitch'), view.pitch);
    gl.uniform1f(uniform('tanHalf'), Math.tan((view.fov * Math.PI) / 360));
    gl.uniform1f(uniform('aspect'), canvas.width / canvas.height);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  };
  const redraw = () => { if (ready) requestAnimationFrame(draw); };

  const image = new Image();
  image.onload = () => {
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, image);
    // Any image size: no mipmaps, clamped edges (WebGL 1 rules for non-power-of-two textures).
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    ready = true;
    draw();
    // Tests and screenshots wait for this flag: the panorama has been drawn.
    requestAnimationFrame(() => requestAnimationFrame(() => { document.body.dataset.rendered = 'true'; }));
  };
  image.src = panorama;

  window.syncframeInput(canvas, (dx, dy) => {
    const perPixel = (view.fov * Math.PI) / 180 / canvas.clientHeight;
    view.yaw -= dx * perPixel;
    view.pitch = Math.max(-Math.PI / 2, Math.min(Math.PI / 2, view.pitch + dy * perPixel));
  }, (factor) => { view.fov = Math.max(20, Math.min(120, view.fov * factor)); }, redraw);
};
