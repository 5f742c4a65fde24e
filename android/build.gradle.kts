// PocketLM Android library: the uniffi-generated bindings (src/main/kotlin/uniffi/pocketlm, checked
// in and kept in sync by scripts/test-kotlin.sh), the ai.pocketlm coroutine wrapper, and the native
// libpocketlm.so per ABI in src/main/jniLibs. Plugin versions come from settings.gradle.kts when this
// folder is built on its own, or from the app's build when it is included as a module.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "ai.pocketlm"
    compileSdk = 35

    defaultConfig {
        minSdk = 24
        // Apps that minify keep JNA and the generated classes (both are reached by reflection).
        consumerProguardFiles("consumer-rules.pro")
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    testOptions {
        unitTests.all {
            // The JVM tests load the host build of the library and the test models:
            // cargo build -p pocketlm && scripts/make-test-models.sh
            it.useJUnitPlatform()
            it.systemProperty("jna.library.path", rootDir.resolve("../target/debug").path)
            it.systemProperty("pocketlm.testModels", rootDir.resolve("../build/test-models").path)
        }
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // @aar: JNA's Android packaging, with libjnidispatch.so for every ABI.
    implementation("net.java.dev.jna:jna:5.14.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.8.1")

    // Unit tests run on the desktop JVM: the plain JNA jar brings the desktop dispatch library.
    testImplementation("net.java.dev.jna:jna:5.14.0")
    testImplementation(kotlin("test-junit5"))
    testImplementation("org.junit.jupiter:junit-jupiter:5.10.2")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
}
