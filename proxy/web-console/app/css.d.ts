// Stylesheets imported for esbuild to bundle into the app's one stylesheet.
declare module '*.css' {}
