import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/fixtures/services-setup.ts'],
    setupFiles: ['test/fixtures/worker-setup.ts'],
    // Most tests wait on services, child processes and timers rather than the CPU: four files at
    // a time on two cores.
    maxWorkers: 4,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
})
