// syncframe's entry point into Photo Sphere Viewer for the 360° app: one global function the page calls with
// the panorama as a data URL, so viewer.html works from a file:// URL with no server.
import { Viewer } from '@photo-sphere-viewer/core';
import '@photo-sphere-viewer/core/index.css';

// Photo Sphere Viewer shows its caption as HTML; ours is the user's prompt, which is text.
const asText = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

window.syncframeViewer = (container, panorama, caption) => {
  const viewer = new Viewer({
    container,
    panorama,
    caption: asText(caption),
    defaultZoomLvl: 30,
    navbar: ['zoom', 'move', 'caption', 'fullscreen'],
  });
  // Tests and the screenshot script wait for this flag: the panorama is loaded and two
  // animation frames later it has been drawn.
  viewer.addEventListener('ready', () => {
    requestAnimationFrame(() => requestAnimationFrame(() => { document.body.dataset.rendered = 'true'; }));
  }, { once: true });
  return viewer;
};
