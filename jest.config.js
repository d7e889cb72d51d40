/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/spec'],
  testMatch: ['**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  testTimeout: 30000,
  // Most specs wait on sockets and child processes, not on the CPU: two workers overlap that
  // waiting on this 2-core machine (jest's default would be one).
  maxWorkers: 2,
};
