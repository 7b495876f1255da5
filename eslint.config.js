'use strict'
// ESLint (flat config) for the JavaScript of the package, the example, the benchmarks and the
// scripts; formatting is prettier's (.prettierrc.json). The TypeScript tests are type-checked by
// ts-jest instead.
const js = require('@eslint/js')
const globals = require('globals')

module.exports = [
  { ignores: ['binding.js', 'target/**', 'node_modules/**', 'fuzz/**', '**/*.ts'] },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'commonjs',
      globals: { ...globals.node },
    },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
      eqeqeq: ['error', 'always'],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
  {
    // the status page's script runs in the browser
    files: ['example/public/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser } },
  },
]
