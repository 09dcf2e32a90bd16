// syncframe's entry point into gaussian-splats-3d (three.js) for the splats app: one global function the
// page calls with the 3DGS PLY as base64, so viewer.html works from a file:// URL with no server.
import * as GaussianSplats3D from '@mkkellogg/gaussian-splats-3d';

window.syncframeSplatViewer = (container, plyBase64, caption, options = {}) => {
  const label = document.createElement('div');
  label.textContent = caption;
  label.style.cssText = 'position:absolute;left:12px;bottom:10px;color:#ddd;font:14px sans-serif;z-index:2';
  container.appendChild(label);
  const up = options.up === 'z' ? [0, 0, 1] : [0, 1, 0];
  const viewer = new GaussianSplats3D.Viewer({
    rootElement: container,
    cameraUp: up,
    initialCameraPosition: options.eye || [0, 1, 4],
    initialCameraLookAt: options.target || [0, 0, 0],
    // A page opened from disk is not cross-origin isolated: no SharedArrayBuffer for the sort worker.
    sharedMemoryForWorkers: false,
    gpuAcceleratedSort: false,
    sceneRevealMode: GaussianSplats3D.SceneRevealMode.Instant,
  });
  const bytes = Uint8Array.from(atob(plyBase64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  viewer.addSplatScene(url, { format: GaussianSplats3D.SceneFormat.Ply, showLoadingUI: false, progressiveLoad: false,
    splatAlphaRemovalThreshold: 1 })
    .then(() => {
      viewer.start();
      // Tests and screenshots wait for this flag: a few frames after the scene is in, it has been drawn
      // (the sort worker answers asynchronously).
      let frames = 0;
      const wait = () => { if (++frames > 30) document.body.dataset.rendered = 'true'; else requestAnimationFrame(wait); };
      requestAnimationFrame(wait);
    })
    .catch((error) => { label.textContent = `could not read the splats: ${error}`; });
  return viewer;
};
