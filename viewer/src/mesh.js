// syncframe's entry point into three.js for the mesh app: one global function the page calls with
// the textured GLB as base64, so viewer.html works from a file:// URL with no server.
import * as THREE from 'three';
import { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';

window.syncframeMeshViewer = (container, glbBase64, caption) => {
  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(container.clientWidth, container.clientHeight);
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  container.appendChild(renderer.domElement);
  const label = document.createElement('div');
  label.textContent = caption;
  label.style.cssText = 'position:absolute;left:12px;bottom:10px;color:#222;font:14px sans-serif';
  container.appendChild(label);

  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0xeeeeee);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x666666, 1.6));
  const sun = new THREE.DirectionalLight(0xffffff, 1.6);
  scene.add(sun);
  const camera = new THREE.PerspectiveCamera(45, container.clientWidth / container.clientHeight, 0.01, 1000);
  const controls = new OrbitControls(camera, renderer.domElement);
  const render = () => {
    sun.position.copy(camera.position);
    renderer.render(scene, camera);
  };
  controls.addEventListener('change', render);
  window.addEventListener('resize', () => {
    camera.aspect = container.clientWidth / container.clientHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(container.clientWidth, container.clientHeight);
    render();
  });

  const bytes = Uint8Array.from(atob(glbBase64), (c) => c.charCodeAt(0));
  new GLTFLoader().parse(bytes.buffer, '', (gltf) => {
    scene.add(gltf.scene);
    const box = new THREE.Box3().setFromObject(gltf.scene);
    const centre = box.getCenter(new THREE.Vector3());
    const radius = box.getSize(new THREE.Vector3()).length() / 2 || 1;
    camera.position.copy(centre).add(new THREE.Vector3(0.48, 0.34, 0.81).multiplyScalar(2.8 * radius));
    camera.near = radius / 100;
    camera.far = radius * 100;
    camera.updateProjectionMatrix();
    controls.target.copy(centre);
    controls.update();
    render();
    // Tests and screenshots wait for this flag: the mesh has been drawn.
    requestAnimationFrame(() => requestAnimationFrame(() => { document.body.dataset.rendered = 'true'; }));
  }, (error) => { label.textContent = `could not read the mesh: ${error}`; });
};
