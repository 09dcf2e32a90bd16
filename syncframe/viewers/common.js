// Shared by syncframe's built-in viewers (the page inlines this before the viewer's own script):
// the canvas with its caption, the GL context, shader programs, and drag / wheel input.
window.syncframeStage = (container, caption, contextType, fallback, captionColour = '#222') => {
  const canvas = document.createElement('canvas');
  canvas.style.cssText = 'width:100%;height:100%;display:block;cursor:grab;touch-action:none';
  container.appendChild(canvas);
  const label = document.createElement('div');
  label.textContent = caption;
  label.style.cssText = `position:absolute;left:12px;bottom:10px;color:${captionColour};font:14px sans-serif;`
    + 'text-shadow:0 0 3px rgba(0,0,0,0.4)';
  container.appendChild(label);
  const gl = canvas.getContext(contextType, { preserveDrawingBuffer: true, antialias: true });
  if (!gl) label.textContent = `This browser has no ${contextType === 'webgl2' ? 'WebGL 2' : 'WebGL'}; ${fallback}`;
  return { canvas, label, gl };
};

// A linked shader program from vertex and fragment sources, in use.
window.syncframeProgram = (gl, vertexSource, fragmentSource) => {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vertexSource], [gl.FRAGMENT_SHADER, fragmentSource]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  gl.useProgram(program);
  return program;
};

// drag(dx, dy) in CSS pixels while a pointer is down, zoom(factor) on the wheel, then redraw().
window.syncframeInput = (canvas, drag, zoom, redraw) => {
  let last = null;
  canvas.addEventListener('pointerdown', (e) => { last = { x: e.clientX, y: e.clientY }; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener('pointerup', () => { last = null; });
  canvas.addEventListener('pointermove', (e) => {
    if (!last) return;
    drag(e.clientX - last.x, e.clientY - last.y);
    last = { x: e.clientX, y: e.clientY };
    redraw();
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    zoom(Math.exp(e.deltaY * 0.001));
    redraw();
  }, { passive: false });
  window.addEventListener('resize', redraw);
};
