import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

// The build goes into the Python package, so an installed Server serves it (docs/console.md).
// File names carry a content hash: the same sources always give the same files (CI checks it).
export default defineConfig({
  base: "/console/",
  plugins: [svelte()],
  build: {
    outDir: "../fluxfunc_server/console_dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1200,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:8088" },
  },
});
